package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-build/kiln/internal/api"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestHistoryTable: a failure detail of several lines, with tabs and blank lines, keeps
// every row of kiln history aligned: its lines go on in the DETAIL column.
func TestHistoryTable(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	img := "sha256:" + strings.Repeat("ab", 32)
	revs := []api.Revision{
		{Number: 4, Image: img, ImageName: "web", Created: now.Add(-4 * time.Second), AppliedBy: "alice (rollback to revision 2)",
			Commit: "a63a6f7adc1e5f2b", Outcome: "deployed", Current: true},
		{Number: 3, Image: img, ImageName: "web", Created: now.Add(-90 * time.Second), AppliedBy: "alice", Commit: "a63a6f7adc1e5f2b",
			Outcome: "rolled_back", Detail: "server kiln-web-1 exited with code 3 before it was healthy; its last lines:\n" +
				"  panic: open /etc/web/config.json: no such file\n\n\tgoroutine 1 [running]:\r\n  main.main()\n"},
		{Number: 2, Image: img, ImageName: "web", Created: now.Add(-3 * time.Hour), AppliedBy: "bob", Outcome: "deployed"},
		{Number: 1, Image: img, ImageName: "web", Created: now.Add(-5 * time.Hour), AppliedBy: "pipeline\tweb", Outcome: "failed",
			Detail: "health check /healthz: 503 Service Unavailable"},
	}
	var b bytes.Buffer
	if err := writeHistory(&b, revs, now); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "history.golden")
	if *update {
		os.WriteFile(golden, b.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("kiln history (-want +got):\n%s", diff)
	}
	// Every line is cut into the same columns: each starts where the header's does.
	detail := strings.Index(b.String(), "DETAIL")
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")[1:] {
		if len(l) > detail && l[detail-1] != ' ' {
			t.Errorf("a line runs into the DETAIL column: %q", l)
		}
	}
}
