package spec

import "testing"

func TestDidYouMean(t *testing.T) {
	tests := []struct {
		given      string
		candidates []string
		want       string
	}{
		{"pyap", []string{"web", "pyapp"}, ` Did you mean "pyapp"?`},
		{"bsae", []string{"base"}, ` Did you mean "base"?`},
		{"versoin", []string{"region", "version"}, ` Did you mean "version"?`},
		{"db_pasword", []string{"db_password", "api_token"}, ` Did you mean "db_password"?`},
		{"colour", []string{"from", "user", "cmd", "env"}, ""},
		{"x", []string{"y"}, ""},                                  // one edit is the whole name
		{"db", []string{"web"}, ""},                               // two edits of two letters
		{"web", []string{"web"}, ""},                              // not a correction
		{"wbe", []string{"web"}, ""},                              // two edits of three letters
		{"apii", []string{"api", "apis"}, ` Did you mean "api"?`}, // a tie goes to the first in order
		{"webb", []string{"we", "web"}, ` Did you mean "web"?`},   // the closest wins
		{"anything", nil, ""},
	}
	for _, tt := range tests {
		if got := didYouMean(tt.given, tt.candidates); got != tt.want {
			t.Errorf("didYouMean(%q, %q) = %q, want %q", tt.given, tt.candidates, got, tt.want)
		}
	}
}
