//! The DCS instance name a managed DcsInstance gets by default:
//! `<namespace>-<metadata.name>`, sanitised to DCS's rules (letters, digits, '-'
//! and '_', a letter first, 4 to 64 characters).

use sha2::{Digest, Sha256};

pub const MIN_NAME: usize = 4;
pub const MAX_NAME: usize = 64;
/// Characters of the hash suffix added when the name had to be cut or changed.
const HASH_CHARS: usize = 8;

/// Whether DCS accepts `name` as an instance name.
pub fn valid_instance_name(name: &str) -> bool {
    (MIN_NAME..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<namespace>-<name>` made acceptable to DCS. When anything had to change (a
/// character replaced, a prefix added, the length cut), a short hash of the
/// original is appended, so two objects whose names differ only in what was
/// replaced still get different instance names.
pub fn default_instance_name(namespace: &str, name: &str) -> String {
    let original = format!("{namespace}-{name}");
    let mut sanitised: String = original
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !sanitised.starts_with(|c: char| c.is_ascii_alphabetic()) {
        sanitised.insert_str(0, "dcs-");
    }
    if sanitised == original && valid_instance_name(&sanitised) {
        return sanitised;
    }
    let digest = hex::encode(Sha256::digest(original.as_bytes()));
    let keep = MAX_NAME - HASH_CHARS - 1;
    // Only ASCII is left, so any byte index is a character boundary.
    sanitised.truncate(keep);
    let trimmed = sanitised.trim_end_matches(['-', '_']);
    format!("{trimmed}-{}", &digest[..HASH_CHARS])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(default_instance_name("team-a", "cache"), "team-a-cache");
        assert_eq!(default_instance_name("ns", "c_1"), "ns-c_1");
    }

    #[test]
    fn changed_names_get_a_hash_so_they_do_not_collide() {
        let dotted = default_instance_name("team-a", "my.cache");
        let dashed = default_instance_name("team-a", "my-cache");
        assert!(dotted.starts_with("team-a-my-cache-"), "{dotted}");
        assert_ne!(dotted, dashed);
        let digit_first = default_instance_name("1ns", "a");
        assert!(digit_first.starts_with("dcs-1ns-a-"), "{digit_first}");
        assert!(valid_instance_name(&digit_first));
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = default_instance_name(&"n".repeat(63), &"x".repeat(253));
        assert_eq!(long.len(), MAX_NAME);
        assert!(valid_instance_name(&long));
        let other = default_instance_name(&"n".repeat(63), &format!("{}y", "x".repeat(252)));
        assert_ne!(long, other);
    }

    proptest! {
        #[test]
        fn every_name_is_valid(namespace in "[a-z0-9][-a-z0-9]{0,62}", name in "[a-z0-9][-a-z0-9.]{0,252}") {
            let made = default_instance_name(&namespace, &name);
            prop_assert!(valid_instance_name(&made), "{}", made);
            prop_assert_eq!(made.clone(), default_instance_name(&namespace, &name));
        }
    }
}
