//! The server's persistent records and repository (issue 5 groundwork).
