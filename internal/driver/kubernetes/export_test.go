package kubernetes

// AuditDetail is the detail of the EventExec the watch makes of one line of the API
// server's audit log, before it looks the pod up; ok is false when the line records
// no exec, attach or port-forward into a pod of namespace that was let through.
func AuditDetail(line []byte, namespace string) (detail, stage string, ok bool) {
	ev, ok := reachIn(line, namespace)
	if !ok {
		return "", "", false
	}
	return ev.detail(), ev.Stage, true
}

// Follow follows path from its end, or from where the last follower with the same
// state file had read it; next returns the lines appended since it was last called
// (see follower.next), and saves how far it read.
func Follow(path, state string) (next func() ([]string, error), close func()) {
	t, _ := follow(path, state)
	return func() ([]string, error) {
		lines, err := t.next()
		if serr := t.save(); err == nil {
			err = serr
		}
		out := make([]string, len(lines))
		for i, l := range lines {
			out[i] = string(l)
		}
		return out, err
	}, t.close
}

// MaxLine is the longest line a follower returns.
const MaxLine = maxLine
