//! Samples from several sources over the same time, each moment counted once: the way the
//! Health app adds up an iPhone's and a Watch's overlapping step samples (and sleep stages),
//! by a source order rather than by summing.

use std::collections::BTreeSet;

/// A sample over `[start, end)` (Unix seconds) from a source of `rank` (lower wins).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    pub rank: u32,
}

/// Part of a span that counts: `[start, end)` of `spans[span]`, where no better-ranked
/// span covers it. A zero-length span counts as a zero-length piece unless a better-ranked
/// span covers its instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub start: i64,
    pub end: i64,
    pub span: usize,
}

/// For every moment, the best-ranked span covering it (of equal ranks, the first given):
/// the pieces, in time order, adjacent pieces of one span merged.
pub fn winners(spans: &[Span]) -> Vec<Piece> {
    // At one instant: spans that end there no longer cover it, spans that begin there do,
    // and a zero-length span is weighed against what covers it then.
    const CLOSE: u8 = 0;
    const OPEN: u8 = 1;
    const INSTANT: u8 = 2;
    let mut edges: Vec<(i64, u8, usize)> = Vec::with_capacity(spans.len() * 2);
    for (index, span) in spans.iter().enumerate() {
        if span.end > span.start {
            edges.push((span.start, OPEN, index));
            edges.push((span.end, CLOSE, index));
        } else if span.end == span.start {
            edges.push((span.start, INSTANT, index));
        }
    }
    edges.sort_unstable();
    let mut active: BTreeSet<(u32, usize)> = BTreeSet::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut at = edges.first().map_or(0, |edge| edge.0);
    for (time, kind, index) in edges {
        if time > at {
            if let Some(&(_, best)) = active.first() {
                match pieces.last_mut() {
                    Some(last) if last.span == best && last.end == at => last.end = time,
                    _ => pieces.push(Piece { start: at, end: time, span: best }),
                }
            }
            at = time;
        }
        let key = (spans[index].rank, index);
        match kind {
            OPEN => {
                active.insert(key);
            }
            CLOSE => {
                active.remove(&key);
            }
            _ => {
                if active.first().is_none_or(|&(rank, _)| rank >= key.0) {
                    pieces.push(Piece { start: time, end: time, span: index });
                }
            }
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span(start: i64, end: i64, rank: u32) -> Span {
        Span { start, end, rank }
    }

    #[test]
    fn a_better_source_wins_where_they_overlap_and_the_other_fills_the_rest() {
        // The watch (rank 0) from 10 to 20, the phone (rank 1) from 5 to 30.
        let spans = [span(10, 20, 0), span(5, 30, 1)];
        assert_eq!(
            winners(&spans),
            vec![
                Piece { start: 5, end: 10, span: 1 },
                Piece { start: 10, end: 20, span: 0 },
                Piece { start: 20, end: 30, span: 1 },
            ]
        );
    }

    #[test]
    fn gaps_count_nothing_and_touching_samples_of_one_source_stay_apart() {
        let spans = [span(0, 10, 0), span(10, 20, 0), span(30, 40, 1)];
        let pieces = winners(&spans);
        assert_eq!(
            pieces.iter().map(|p| (p.start, p.end, p.span)).collect::<Vec<_>>(),
            [(0, 10, 0), (10, 20, 1), (30, 40, 2)]
        );
    }

    #[test]
    fn an_instant_counts_unless_a_better_source_covers_it() {
        let spans = [span(10, 20, 0), span(15, 15, 1), span(25, 25, 1), span(12, 12, 0)];
        let counted: Vec<usize> = winners(&spans).iter().filter(|p| p.start == p.end).map(|p| p.span).collect();
        assert_eq!(counted, [3, 2]);
    }

    /// Each second's winner, found by looking at every span: the reference the sweep must match.
    fn winner_at(spans: &[Span], second: i64) -> Option<usize> {
        spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.start <= second && second < s.end)
            .min_by_key(|(index, s)| (s.rank, *index))
            .map(|(index, _)| index)
    }

    proptest! {
        #[test]
        fn every_second_goes_to_the_best_ranked_span_covering_it(
            raw in prop::collection::vec((0i64..200, 0i64..60, 0u32..3), 0..12)
        ) {
            let spans: Vec<Span> = raw.iter().map(|&(start, length, rank)| span(start, start + length, rank)).collect();
            let pieces = winners(&spans);
            for second in 0..260 {
                let owner = pieces.iter().find(|p| p.start <= second && second < p.end).map(|p| p.span);
                prop_assert_eq!(owner, winner_at(&spans, second), "second {}", second);
            }
            for pair in pieces.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start || pair[0].start == pair[0].end || pair[1].start == pair[1].end);
            }
        }
    }
}
