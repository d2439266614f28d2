//! Worker registry and dispatch selection (issue 5 groundwork).
