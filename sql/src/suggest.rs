//! "Did you mean …": the closest candidate by edit distance, when it is close enough to help.

/// The candidate closest to `wanted` (case-insensitive Levenshtein distance), if its distance
/// is at most a third of the longer name (and at least 1, so one typo is always caught).
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let wanted_lower = wanted.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            (
                distance(&wanted_lower, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(d, candidate)| *d <= (wanted.len().max(candidate.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate.to_string())
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_typo_and_ignores_strangers() {
        let columns = ["id", "amount", "name", "created_at"];
        assert_eq!(closest("amout", columns), Some("amount".into()));
        assert_eq!(closest("NAME", columns), Some("name".into()));
        assert_eq!(closest("zebra", columns), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
