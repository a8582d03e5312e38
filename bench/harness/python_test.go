package harness

import "testing"

func TestStoppedIn(t *testing.T) {
	msg := "server kiln-web-1a2b destroyed (stopped in 10.21s): replaced by revision 3"
	if s, ok := stoppedIn(msg, "replaced by revision 3"); !ok || s != 10.21 {
		t.Errorf("stoppedIn = %v, %v", s, ok)
	}
	if s, ok := stoppedIn("server x destroyed (stopped in 170ms): replaced by revision 3", "replaced by revision 3"); !ok || s != 0.17 {
		t.Errorf("stoppedIn = %v, %v", s, ok)
	}
	for _, c := range []struct{ msg, why string }{
		{msg, "replaced by revision 4"},
		{"server x destroyed (stopped in 1s): drift", "replaced by revision 3"},
		{"server x created from revision 3", "replaced by revision 3"},
	} {
		if _, ok := stoppedIn(c.msg, c.why); ok {
			t.Errorf("stoppedIn(%q, %q) took it", c.msg, c.why)
		}
	}
}
