//! "Did you mean …?" suggestions for misspelled instructions, flags, stages and keys.

/// The closest candidate to `word` (case-insensitive) if it is plausibly a typo of it: a small
/// edit distance (swapped letters count once), or an abbreviation of at least three letters.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let len = word.chars().count();
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        .filter_map(|c| {
            let lc = c.to_lowercase();
            let d = distance(&word, &lc);
            if d <= limit {
                Some((d, c))
            } else if len >= 3 && lc.starts_with(&word) {
                Some((limit + 1, c))
            } else {
                None
            }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions, by characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let names = ["COPY", "CMD", "RUN", "WORKDIR"];
        assert_eq!(closest("COPPY", names), Some("COPY"));
        assert_eq!(closest("workdri", names), Some("WORKDIR"));
        assert_eq!(closest("xyzzy", names), None);
        assert_eq!(closest("form", ["from", "chown"]), Some("from"));
        assert_eq!(closest("plat", ["platform"]), Some("platform"));
        assert_eq!(closest("pl", ["platform"]), None);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("ab", "ba"), 1);
    }
}
