package cli

import "testing"

func TestParseRollback(t *testing.T) {
	for in, want := range map[string]struct {
		user string
		to   int64
		ok   bool
	}{
		"alice (rollback to revision 3)":                        {"alice", 3, true},
		"dashboard (rollback to revision 12)":                   {"dashboard", 12, true},
		"bob (rollback to revision 1) (rollback to revision 2)": {"bob (rollback to revision 1)", 2, true},
		"alice":                          {"", 0, false},
		"alice (rollback to revision x)": {"", 0, false},
		"pipeline hello (commit abc)":    {"", 0, false},
	} {
		user, to, ok := parseRollback(in)
		if user != want.user || to != want.to || ok != want.ok {
			t.Errorf("parseRollback(%q) = %q, %d, %v; want %q, %d, %v", in, user, to, ok, want.user, want.to, want.ok)
		}
	}
}
