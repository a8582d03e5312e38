package harness

import "testing"

func TestParsePages(t *testing.T) {
	out := "=== RUN   TestThousandServers\n" +
		"    dashboard_test.go:434: PAGE fleet, 1,000 servers in 20 services|/|median_render_ms=10.20|bytes=14412\n" +
		"    dashboard_test.go:434: PAGE service of 1,000 servers, last page|/services/big?page=20|median_render_ms=11.4|bytes=42700\n" +
		"--- PASS: TestThousandServers (6.10s)\nPASS\n"
	pages, err := parsePages(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []dashboardPage{{"fleet, 1,000 servers in 20 services", "/", 10.2, 14412}, {"service of 1,000 servers, last page", "/services/big?page=20", 11.4, 42700}}
	if len(pages) != 2 || pages[0] != want[0] || pages[1] != want[1] {
		t.Errorf("parsePages = %+v", pages)
	}
	for _, bad := range []string{"PAGE a|/|10|20\n", "PAGE a|/|median_render_ms=x|bytes=1\n", "PAGE a|/\n"} {
		if _, err := parsePages(bad); err == nil {
			t.Errorf("parsePages(%q) took it", bad)
		}
	}
}
