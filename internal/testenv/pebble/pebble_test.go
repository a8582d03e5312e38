package pebble

import (
	"context"
	"encoding/json"
	"testing"
)

// TestStart: Pebble answers its directory over HTTPS trusted by Roots, gives its
// issuing root, and stops answering once stopped.
func TestStart(t *testing.T) {
	s := Start(t, Config{})
	ctx := context.Background()
	body, err := get(ctx, s.client(), s.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	var dir map[string]any
	if err := json.Unmarshal(body, &dir); err != nil || dir["newOrder"] == nil {
		t.Fatalf("directory %q: %v, no newOrder", body, err)
	}
	if _, err := s.IssuingRoot(ctx); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := get(ctx, s.client(), s.DirectoryURL); err == nil {
		t.Fatal("Pebble still answers once stopped")
	}
	s.Stop() // idempotent
}
