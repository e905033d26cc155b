//! The 22 TPC-H queries (the specification's texts with its validation
//! parameters), embedded in the binary.

/// Query texts, `QUERIES[0]` is Q1. Q15 holds three statements.
pub const QUERIES: [&str; 22] = [
    include_str!("../../tpch/queries/q1.sql"),
    include_str!("../../tpch/queries/q2.sql"),
    include_str!("../../tpch/queries/q3.sql"),
    include_str!("../../tpch/queries/q4.sql"),
    include_str!("../../tpch/queries/q5.sql"),
    include_str!("../../tpch/queries/q6.sql"),
    include_str!("../../tpch/queries/q7.sql"),
    include_str!("../../tpch/queries/q8.sql"),
    include_str!("../../tpch/queries/q9.sql"),
    include_str!("../../tpch/queries/q10.sql"),
    include_str!("../../tpch/queries/q11.sql"),
    include_str!("../../tpch/queries/q12.sql"),
    include_str!("../../tpch/queries/q13.sql"),
    include_str!("../../tpch/queries/q14.sql"),
    include_str!("../../tpch/queries/q15.sql"),
    include_str!("../../tpch/queries/q16.sql"),
    include_str!("../../tpch/queries/q17.sql"),
    include_str!("../../tpch/queries/q18.sql"),
    include_str!("../../tpch/queries/q19.sql"),
    include_str!("../../tpch/queries/q20.sql"),
    include_str!("../../tpch/queries/q21.sql"),
    include_str!("../../tpch/queries/q22.sql"),
];

/// The statements of query `n` (1-based), in order.
pub fn statements(n: usize) -> Vec<&'static str> {
    assert!((1..=22).contains(&n), "TPC-H has queries 1 to 22, not {n}");
    QUERIES[n - 1]
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses a query list such as `1,3,5-7`; empty means all 22.
pub fn parse_query_list(spec: &str) -> Result<Vec<usize>, String> {
    if spec.trim().is_empty() {
        return Ok((1..=22).collect());
    }
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim().trim_start_matches(['q', 'Q']);
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim().trim_start_matches(['q', 'Q'])),
            None => (part, part),
        };
        let parse = |s: &str| -> Result<usize, String> {
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=22).contains(n))
                .ok_or_else(|| format!("invalid TPC-H query {s:?}: expected a number from 1 to 22"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("invalid query range {lo}-{hi}"));
        }
        out.extend(lo..=hi);
    }
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q15_has_three_statements_and_lists_parse() {
        assert_eq!(statements(15).len(), 3);
        assert_eq!(statements(1).len(), 1);
        assert_eq!(parse_query_list("1,3,5-7").unwrap(), vec![1, 3, 5, 6, 7]);
        assert_eq!(parse_query_list("").unwrap().len(), 22);
        assert!(parse_query_list("23").unwrap_err().contains("23"));
    }
}
