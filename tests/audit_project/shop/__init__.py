"""A fixture code base for the audit: each planted finding is marked on its line with
`expect: <kind>`, and the test compares the audit's findings with the marks."""
