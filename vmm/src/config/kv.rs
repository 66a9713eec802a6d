//! `key=value,key=value` option strings, as Cloud Hypervisor's CLI uses them.

use std::sync::Mutex;

use super::ConfigError;

/// `s` split at the commas outside `[...]` lists and `"..."` quotes (Cloud Hypervisor's
/// `oem_strings=[a,b]`).
fn split_items(s: &str) -> Vec<&str> {
    let (mut items, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0u32, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items
}

/// A list value, `[a,b,"c,d"]` (or one bare item), into its items, quotes removed.
pub fn parse_list(v: &str) -> Vec<String> {
    let inner = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(v);
    if inner.is_empty() {
        return Vec::new();
    }
    split_items(inner)
        .into_iter()
        .map(|i| {
            i.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .unwrap_or(i)
                .to_string()
        })
        .collect()
}

/// Split `s` into (key, value) pairs, rejecting unknown and duplicate keys.
pub fn parse<'a>(
    option: &'static str,
    s: &'a str,
    accepted: &'static [&'static str],
) -> Result<Vec<(&'static str, &'a str)>, ConfigError> {
    let mut out: Vec<(&'static str, &'a str)> = Vec::new();
    for item in split_items(s).into_iter().filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::NotKeyValue {
                option,
                item: item.to_string(),
            })?;
        let key = accepted
            .iter()
            .find(|a| **a == k)
            .ok_or_else(|| ConfigError::UnknownParam {
                option,
                param: k.to_string(),
                accepted: accepted_list(accepted),
            })?;
        if out.iter().any(|(seen, _)| seen == key) {
            return Err(ConfigError::DuplicateParam {
                option,
                param: k.to_string(),
            });
        }
        out.push((key, v));
    }
    Ok(out)
}

fn accepted_list(accepted: &'static [&'static str]) -> &'static str {
    // Leaked once per parameter list (a handful of statics), not once per error: keeps
    // ConfigError's field 'static and cheap to compare without growing on every bad option
    // (the cli_options fuzz target found the per-call leak).
    static LISTS: Mutex<Vec<(&'static [&'static str], &'static str)>> = Mutex::new(Vec::new());
    let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, joined)) = lists.iter().find(|(list, _)| *list == accepted) {
        return joined;
    }
    let joined: &'static str = Box::leak(accepted.join(", ").into_boxed_str());
    lists.push((accepted, joined));
    joined
}

/// `on`/`off` (and `true`/`false`) as Cloud Hypervisor accepts them.
pub fn parse_bool(option: &'static str, param: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            option,
            param,
            value: v.to_string(),
            reason: "expected on or off".into(),
        }),
    }
}

/// A `pci_segment=N` value: a segment number below [`super::MAX_PCI_SEGMENTS`] (whether the
/// VM has that many is checked with the whole configuration).
pub fn parse_segment(option: &'static str, v: &str) -> Result<u16, ConfigError> {
    match v.parse::<u16>() {
        Ok(n) if n < super::MAX_PCI_SEGMENTS => Ok(n),
        _ => Err(ConfigError::InvalidValue {
            option,
            param: "pci_segment",
            value: v.to_string(),
            reason: format!(
                "a PCI segment number from 0 to {}",
                super::MAX_PCI_SEGMENTS - 1
            ),
        }),
    }
}

/// A `pci_device_id=N` value: the slot on the segment's bus 0, 1 to 31 (slot 0 is the host
/// bridge's, on every segment here).
pub fn parse_device_id(option: &'static str, v: &str) -> Result<u8, ConfigError> {
    match v.parse::<u8>() {
        Ok(n) if (1..=31).contains(&n) => Ok(n),
        _ => Err(ConfigError::InvalidValue {
            option,
            param: "pci_device_id",
            value: v.to_string(),
            reason: "a PCI slot from 1 to 31 (0 is the host bridge)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pairs_and_rejects_unknown_duplicate_and_bare_items() {
        assert_eq!(
            parse("memory", "size=1G,prefault=on", &["size", "prefault"]).unwrap(),
            vec![("size", "1G"), ("prefault", "on")]
        );
        assert!(matches!(
            parse("memory", "sise=1G", &["size"]),
            Err(ConfigError::UnknownParam { .. })
        ));
        assert!(matches!(
            parse("memory", "size=1G,size=2G", &["size"]),
            Err(ConfigError::DuplicateParam { .. })
        ));
        assert!(matches!(
            parse("memory", "1G", &["size"]),
            Err(ConfigError::NotKeyValue { .. })
        ));
    }

    #[test]
    fn unknown_param_errors_share_one_accepted_list_instead_of_leaking_one_each() {
        let accepted = |s| match parse("memory", s, &["size", "prefault"]) {
            Err(ConfigError::UnknownParam { accepted, .. }) => accepted,
            other => panic!("{other:?}"),
        };
        let (a, b) = (accepted("sise=1G"), accepted("prefualt=on"));
        assert_eq!(a, "size, prefault");
        assert!(
            std::ptr::eq(a, b),
            "a new list was leaked for the second error"
        );
    }

    #[test]
    fn lists_and_quotes_keep_their_commas() {
        assert_eq!(
            parse(
                "platform",
                "oem_strings=[a,b],uuid=x",
                &["oem_strings", "uuid"]
            )
            .unwrap(),
            vec![("oem_strings", "[a,b]"), ("uuid", "x")]
        );
        assert_eq!(parse_list("[a,b]"), ["a", "b"]);
        assert_eq!(parse_list("[\"a,b\",c]"), ["a,b", "c"]);
        assert_eq!(parse_list("single"), ["single"]);
        assert!(parse_list("[]").is_empty());
    }

    #[test]
    fn bools_accept_on_off_true_false_only() {
        assert!(parse_bool("m", "p", "on").unwrap());
        assert!(!parse_bool("m", "p", "false").unwrap());
        assert!(parse_bool("m", "p", "yes").is_err());
    }
}
