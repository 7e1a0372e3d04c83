//! The uid/gid maps of the builder's user namespace, for rootless RUN steps.
//!
//! This module owns reading `/etc/subuid` and `/etc/subgid` (passed in as text, so it stays pure), picking the
//! ranges that belong to the invoking user, and laying them out as the namespace's maps: the caller's own id
//! becomes 0 and the sub-id ranges follow at 1, 2, … in file order. It also renders the maps as the argument
//! list of `newuidmap`/`newgidmap`.
//!
//! Every range is checked here, before those tools run: they accept a bad range silently and the kernel's refusal
//! only surfaces later as an opaque `EINVAL` from the runtime. Checking up front lets the error name the file, the
//! range and what to do about it.

use std::fmt;

/// A range of ids from one line of a sub-id file: `count` ids starting at `start` (outside the namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

impl fmt::Display for IdRange {
    /// The range as it is written in the file, `start:count`, followed by the ids it covers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = u64::from(self.start) + u64::from(self.count).saturating_sub(1);
        write!(f, "{}:{} (ids {}-{})", self.start, self.count, self.start, last)
    }
}

/// One line of a uid or gid map: `count` ids from `inside` the namespace map to ids from `outside` on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapping {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The highest id a map may use: `u32::MAX` is `(uid_t)-1`, which the kernel never maps.
const MAX_ID: u32 = u32::MAX - 1;

/// What is wrong with a sub-id file or with the ranges found in it. Each message names the file (and the line or
/// range), says what is wrong and what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdMapError {
    /// A line that is not `name_or_uid:start:count`.
    #[error(
        "{file} line {line}: expected `name_or_uid:start:count`, got `{text}` ({reason}): fix or remove the line"
    )]
    Malformed { file: String, line: usize, text: String, reason: String },

    /// The user has no range in the file, and the caller wants sub-ids rather than a single-id map.
    #[error("no entry for user {user} (uid {uid}) in {file}: add one with `usermod {flag} 100000-165535 {user}`", flag = usermod_flag(file))]
    NoEntry { file: String, user: String, uid: u32 },

    /// A range of zero ids.
    #[error(
        "{file}: range {start}:0 has no ids (count 0): give it a count of at least 1, e.g. {start}:65536"
    )]
    EmptyRange { file: String, start: u32 },

    /// A range whose last id is past `u32::MAX - 1`.
    #[error(
        "{file}: range {range} runs past {MAX_ID}, the highest id a namespace can map: move it lower \
         or shrink it"
    )]
    RangeOverflow { file: String, range: IdRange },

    /// Two of the user's ranges share ids (the kernel refuses maps whose host ids overlap).
    #[error("{file}: ranges {first} and {second} overlap: shrink or remove one of them so no id is in both")]
    Overlap { file: String, first: IdRange, second: IdRange },

    /// A range contains the caller's own id, which is already mapped to 0.
    #[error(
        "{file}: range {range} contains your own id {caller}, which is already mapped to 0 inside: \
         move the range so it does not include {caller}"
    )]
    ContainsCaller { file: String, range: IdRange, caller: u32 },

    /// More ids in total than a namespace can hold (2^32 - 1).
    #[error(
        "{file}: the ranges add up to {total} ids with yours, more than the {} a namespace can map: shrink them",
        u32::MAX
    )]
    TooManyIds { file: String, total: u64 },
}

/// The `usermod` option that adds ranges to `file` (`--add-subgids` for a subgid file, else `--add-subuids`).
fn usermod_flag(file: &str) -> &'static str {
    if file.contains("subgid") { "--add-subgids" } else { "--add-subuids" }
}

/// Parses subuid/subgid text: lines `name_or_uid:start:count`, `#` comments and blank lines skipped; malformed
/// lines are errors naming the line number.
///
/// Only the syntax is checked here: a zero count or a range past `u32::MAX - 1` in someone else's line does not
/// stop the build; [`build_map`] checks the caller's own ranges.
pub fn parse_subid(text: &str, file: &str) -> Result<Vec<(String, IdRange)>, IdMapError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |reason: String| IdMapError::Malformed {
            file: file.to_string(),
            line: index + 1,
            text: line.to_string(),
            reason,
        };
        let fields: Vec<&str> = line.split(':').map(str::trim).collect();
        let [name, start, count] = fields[..] else {
            return Err(malformed(format!("{} fields instead of 3", fields.len())));
        };
        if name.is_empty() {
            return Err(malformed("empty user name".to_string()));
        }
        let number = |what: &str, value: &str| {
            value
                .parse::<u32>()
                .map_err(|_| malformed(format!("{what} `{value}` is not a number from 0 to {}", u32::MAX)))
        };
        let range = IdRange { start: number("start", start)?, count: number("count", count)? };
        entries.push((name.to_string(), range));
    }
    Ok(entries)
}

/// The ranges that belong to a user, matched by name or by numeric uid (as shadow-utils does).
pub fn ranges_for(entries: &[(String, IdRange)], user: &str, uid: u32) -> Vec<IdRange> {
    entries
        .iter()
        .filter(|(owner, _)| owner == user || owner.parse::<u32>() == Ok(uid))
        .map(|(_, range)| *range)
        .collect()
}

/// The maps for the namespace: the caller → 0, then the sub-id ranges mapped to 1.. (consecutively, in file
/// order), never overlapping the caller's own id, with no overflow past `u32::MAX - 1` and a total that fits
/// 2^32-1. Ranges that overlap each other or contain the caller's id are errors (with the file and range named).
///
/// `file` is the sub-id file the ranges came from, for the error messages. With no ranges the map is the single
/// id `caller → 0` (see [`single_id_warning`]).
pub fn build_map(caller: u32, ranges: &[IdRange], file: &str) -> Result<Vec<IdMapping>, IdMapError> {
    for &range in ranges {
        if range.count == 0 {
            return Err(IdMapError::EmptyRange { file: file.to_string(), start: range.start });
        }
        if u64::from(range.start) + u64::from(range.count) - 1 > u64::from(MAX_ID) {
            return Err(IdMapError::RangeOverflow { file: file.to_string(), range });
        }
        if range.start <= caller && u64::from(caller) < u64::from(range.start) + u64::from(range.count) {
            return Err(IdMapError::ContainsCaller { file: file.to_string(), range, caller });
        }
    }
    for (i, first) in ranges.iter().enumerate() {
        for second in &ranges[i + 1..] {
            let first_end = u64::from(first.start) + u64::from(first.count);
            let second_end = u64::from(second.start) + u64::from(second.count);
            if u64::from(first.start) < second_end && u64::from(second.start) < first_end {
                return Err(IdMapError::Overlap { file: file.to_string(), first: *first, second: *second });
            }
        }
    }

    let mut maps = vec![IdMapping { inside: 0, outside: caller, count: 1 }];
    // The next free id inside; u64 so the sum of counts cannot wrap.
    let mut next: u64 = 1;
    for range in ranges {
        let end = next + u64::from(range.count);
        // The inside ids must stay within 0..=u32::MAX - 1, i.e. at most 2^32 - 1 ids in all. Disjoint ranges that
        // avoid the caller and u32::MAX cannot exceed that, but the arithmetic is checked rather than assumed.
        let inside = match u32::try_from(next) {
            Ok(inside) if end - 1 <= u64::from(MAX_ID) => inside,
            _ => {
                let total = 1 + ranges.iter().map(|r| u64::from(r.count)).sum::<u64>();
                return Err(IdMapError::TooManyIds { file: file.to_string(), total });
            }
        };
        maps.push(IdMapping { inside, outside: range.start, count: range.count });
        next = end;
    }
    Ok(maps)
}

/// The argument list for newuidmap/newgidmap after the pid: `inside outside count` triples as strings.
pub fn map_args(maps: &[IdMapping]) -> Vec<String> {
    maps.iter().flat_map(|m| [m.inside.to_string(), m.outside.to_string(), m.count.to_string()]).collect()
}

/// What a single-id map (no sub-ids) squashes, for the one-line warning: "files owned by ids other than 0 (e.g.
/// 42, 1000, 65534) will be owned by root inside RUN steps".
pub fn single_id_warning(file: &str, user: &str) -> String {
    format!(
        "no range for {user} in {file}, so only your own id is mapped (to 0): files owned by ids other than 0 \
         (e.g. 42, 1000, 65534) will be owned by root inside RUN steps; for real ownership add a range with \
         `usermod {} 100000-165535 {user}`",
        usermod_flag(file)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str = "/etc/subuid";

    fn range(start: u32, count: u32) -> IdRange {
        IdRange { start, count }
    }

    fn map(inside: u32, outside: u32, count: u32) -> IdMapping {
        IdMapping { inside, outside, count }
    }

    #[test]
    fn parse_skips_comments_and_blank_lines() {
        let text = "# sub-ids\n\nalice:100000:65536\n   \n  # indented comment\nbob:165536:65536\r\n";
        let entries = parse_subid(text, SUBUID).unwrap();
        assert_eq!(
            entries,
            vec![("alice".to_string(), range(100000, 65536)), ("bob".to_string(), range(165536, 65536))]
        );
        assert_eq!(parse_subid("", SUBUID).unwrap(), vec![]);
    }

    #[test]
    fn parse_malformed_lines_name_the_line() {
        let cases = [
            ("alice:100000:65536\n# c\n\nbob:1000\n", 4, "2 fields instead of 3"),
            ("alice:1:2:3\n", 1, "4 fields instead of 3"),
            ("\n:100000:65536\n", 2, "empty user name"),
            ("a:1:1\nb:1:1\nc:x:1\n", 3, "start `x` is not a number"),
            ("a:1:-5\n", 1, "count `-5` is not a number"),
            ("a:1:4294967296\n", 1, "count `4294967296` is not a number"),
            ("alice\n", 1, "1 fields instead of 3"),
        ];
        for (text, line, reason) in cases {
            let err = parse_subid(text, SUBUID).unwrap_err();
            let IdMapError::Malformed { line: got, .. } = &err else { panic!("{text:?}: {err:?}") };
            assert_eq!(*got, line, "{text:?}");
            let message = err.to_string();
            assert!(message.starts_with(&format!("{SUBUID} line {line}: ")), "{message}");
            assert!(message.contains(reason), "{message}");
            assert!(message.ends_with("fix or remove the line"), "{message}");
        }
    }

    #[test]
    fn malformed_message_is_exact() {
        let err = parse_subid("alice:100000:65536\nbob:1000\n", "/etc/subgid").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/subgid line 2: expected `name_or_uid:start:count`, got `bob:1000` (2 fields instead of 3): \
             fix or remove the line"
        );
    }

    #[test]
    fn ranges_match_by_name_or_numeric_uid() {
        let entries =
            parse_subid("alice:100000:65536\n1000:300000:10\nbob:200000:65536\n1001:400000:5\n", SUBUID)
                .unwrap();
        assert_eq!(ranges_for(&entries, "alice", 1000), vec![range(100000, 65536), range(300000, 10)]);
        assert_eq!(ranges_for(&entries, "bob", 1001), vec![range(200000, 65536), range(400000, 5)]);
        // A name is not a uid: "alice" with another uid gets only the named line.
        assert_eq!(ranges_for(&entries, "alice", 2000), vec![range(100000, 65536)]);
        assert_eq!(ranges_for(&entries, "carol", 1002), vec![]);
        // Prefixes do not match.
        assert_eq!(ranges_for(&entries, "ali", 5), vec![]);
    }

    #[test]
    fn several_ranges_map_consecutively_in_file_order() {
        // File order, not numeric order: the higher range comes first.
        let ranges = [range(300000, 65536), range(100000, 1000), range(500000, 7)];
        let maps = build_map(1000, &ranges, SUBUID).unwrap();
        assert_eq!(
            maps,
            vec![
                map(0, 1000, 1),
                map(1, 300000, 65536),    // 1..=65536
                map(65537, 100000, 1000), // right after the first range
                map(66537, 500000, 7),
            ]
        );
        // No gaps and no overlap inside: each map starts where the previous one ends.
        for pair in maps.windows(2) {
            assert_eq!(pair[1].inside, pair[0].inside + pair[0].count);
        }
    }

    #[test]
    fn no_ranges_is_a_single_id_map() {
        assert_eq!(build_map(1000, &[], SUBUID).unwrap(), vec![map(0, 1000, 1)]);
    }

    #[test]
    fn overlapping_ranges_are_an_error() {
        let ranges = [range(100000, 65536), range(200000, 10), range(165535, 10)];
        let err = build_map(1000, &ranges, SUBUID).unwrap_err();
        assert_eq!(
            err,
            IdMapError::Overlap {
                file: SUBUID.to_string(),
                first: range(100000, 65536),
                second: range(165535, 10)
            }
        );
        assert_eq!(
            err.to_string(),
            "/etc/subuid: ranges 100000:65536 (ids 100000-165535) and 165535:10 (ids 165535-165544) overlap: \
             shrink or remove one of them so no id is in both"
        );
        // Adjacent ranges do not overlap.
        assert!(build_map(1000, &[range(100000, 65536), range(165536, 10)], SUBUID).is_ok());
        assert!(build_map(1000, &[range(165536, 10), range(100000, 65536)], SUBUID).is_ok());
        // Nor does a duplicate line get through.
        assert!(matches!(
            build_map(1000, &[range(100000, 5), range(100000, 5)], SUBUID),
            Err(IdMapError::Overlap { .. })
        ));
    }

    #[test]
    fn range_containing_the_caller_is_an_error() {
        for r in [range(0, 65536), range(1000, 1), range(999, 2), range(1, 1000)] {
            let err = build_map(1000, &[r], SUBUID).unwrap_err();
            assert_eq!(err, IdMapError::ContainsCaller { file: SUBUID.to_string(), range: r, caller: 1000 });
        }
        let err = build_map(1000, &[range(999, 2)], SUBUID).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/subuid: range 999:2 (ids 999-1000) contains your own id 1000, which is already mapped to 0 \
             inside: move the range so it does not include 1000"
        );
        // Ranges that end just before or start just after the caller are fine.
        assert!(build_map(1000, &[range(1, 999), range(1001, 10)], SUBUID).is_ok());
    }

    #[test]
    fn zero_count_is_an_error() {
        // Parsing accepts it (it may be someone else's line); building the map refuses it.
        let entries = parse_subid("alice:100000:0\n", SUBUID).unwrap();
        let err = build_map(1000, &ranges_for(&entries, "alice", 1000), SUBUID).unwrap_err();
        assert_eq!(err, IdMapError::EmptyRange { file: SUBUID.to_string(), start: 100000 });
        assert_eq!(
            err.to_string(),
            "/etc/subuid: range 100000:0 has no ids (count 0): give it a count of at least 1, e.g. 100000:65536"
        );
    }

    #[test]
    fn overflow_past_the_highest_id_is_an_error() {
        // The last id may be u32::MAX - 1 but not u32::MAX.
        let ok = range(u32::MAX - 10, 10);
        assert_eq!(build_map(1000, &[ok], SUBUID).unwrap()[1], map(1, u32::MAX - 10, 10));
        for r in [range(u32::MAX - 10, 11), range(u32::MAX, 1), range(u32::MAX - 5, u32::MAX)] {
            let err = build_map(1000, &[r], SUBUID).unwrap_err();
            assert_eq!(err, IdMapError::RangeOverflow { file: SUBUID.to_string(), range: r });
        }
        let err = build_map(1000, &[range(4294967290, 10)], SUBUID).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/subuid: range 4294967290:10 (ids 4294967290-4294967299) runs past 4294967294, the highest id a \
             namespace can map: move it lower or shrink it"
        );
    }

    #[test]
    fn the_whole_id_space_fits() {
        // Every id but the caller's and u32::MAX: 2^32 - 1 ids inside, the last one u32::MAX - 1.
        let ranges = [range(0, 1000), range(1001, u32::MAX - 1001)];
        let maps = build_map(1000, &ranges, SUBUID).unwrap();
        assert_eq!(maps, vec![map(0, 1000, 1), map(1, 0, 1000), map(1001, 1001, u32::MAX - 1001)]);
        let last = maps.last().unwrap();
        assert_eq!(u64::from(last.inside) + u64::from(last.count) - 1, u64::from(u32::MAX - 1));
    }

    #[test]
    fn map_args_are_triples() {
        let maps = [map(0, 1000, 1), map(1, 100000, 65536), map(65537, 300000, 10)];
        assert_eq!(
            map_args(&maps),
            ["0", "1000", "1", "1", "100000", "65536", "65537", "300000", "10"].map(String::from).to_vec()
        );
        assert_eq!(map_args(&[]), Vec::<String>::new());
    }

    #[test]
    fn end_to_end_from_file_text() {
        let text = "# managed by useradd\nbob:100000:65536\nalice:165536:65536\n\n1000:400000:100\n";
        let ranges = ranges_for(&parse_subid(text, SUBUID).unwrap(), "alice", 1000);
        let maps = build_map(1000, &ranges, SUBUID).unwrap();
        assert_eq!(
            map_args(&maps),
            ["0", "1000", "1", "1", "165536", "65536", "65537", "400000", "100"].map(String::from).to_vec()
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let err = IdMapError::NoEntry { file: SUBUID.to_string(), user: "alice".to_string(), uid: 1000 };
        assert_eq!(
            err.to_string(),
            "no entry for user alice (uid 1000) in /etc/subuid: add one with \
             `usermod --add-subuids 100000-165535 alice`"
        );
        let err =
            IdMapError::NoEntry { file: "/etc/subgid".to_string(), user: "alice".to_string(), uid: 1000 };
        assert!(err.to_string().ends_with("`usermod --add-subgids 100000-165535 alice`"), "{err}");

        let warning = single_id_warning("/etc/subgid", "alice");
        assert!(!warning.contains('\n'));
        assert!(warning.contains("/etc/subgid") && warning.contains("alice"), "{warning}");
        assert!(
            warning.contains(
                "files owned by ids other than 0 (e.g. 42, 1000, 65534) will be owned by root inside RUN steps"
            ),
            "{warning}"
        );
        assert!(warning.contains("usermod --add-subgids 100000-165535 alice"), "{warning}");
    }
}
