package main

import (
	"strings"
	"testing"
)

func TestAnswer(t *testing.T) {
	b := string(answer("up-1", 100))
	if len(b) != 100 || !strings.HasPrefix(b, "Hello from kiln! ~") || !strings.HasSuffix(b, "\nversion: 1\nserver: up-1\n") {
		t.Errorf("answer(up-1, 100) = %q (%d bytes)", b, len(b))
	}
	if b := string(answer("up-1", 10)); b != "Hello from kiln!\nversion: 1\nserver: up-1\n" {
		t.Errorf("answer(up-1, 10) = %q: shorter than its three lines, it should be just them", b)
	}
}
