package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strconv"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/store"
)

// rollbackTarget is the one rule for the revision a rollback with no revision given
// goes back to: the newest revision before current that deployed and whose settings
// differ from current's (going back to the same settings would change nothing).
// revisions are newest first, as the store returns them. It fails with errNoPrevious
// when there is none. Engine.Rollback rolls back to it and History marks it, which is
// what the CLI and the dashboard offer.
func rollbackTarget(revisions []store.Revision, current store.Revision) (store.Revision, error) {
	for _, r := range revisions {
		if r.Number < current.Number && r.Outcome == store.OutcomeDeployed && !sameSettings(r, current) {
			return r, nil
		}
	}
	return store.Revision{}, errNoPrevious
}

// recordedSpec is what a revision's Spec holds: the service's settings (as
// api.Service's JSON, byte for byte when Rollback is nil) and, for a revision a
// rollback recorded, the rollback. decodeService reads the settings and ignores the
// rest.
type recordedSpec struct {
	api.Service
	Rollback *api.RollbackRecord `json:"rollback,omitempty"`
}

// rollbackKey is recordedSpec.Rollback's key in the JSON.
const rollbackKey = "rollback"

// encodeSpec is the Spec of a revision recording svc, made by rb when it is not nil.
func encodeSpec(svc api.Service, rb *api.RollbackRecord) (string, error) {
	b, err := json.Marshal(recordedSpec{Service: svc, Rollback: rb})
	if err != nil {
		return "", fmt.Errorf("recording service %s: %w", svc.Name, err)
	}
	return string(b), nil
}

// sameSettings reports whether two revisions record the same settings, byte for byte,
// whatever either records of a rollback.
func sameSettings(a, b store.Revision) bool {
	if a.Spec == b.Spec {
		return true
	}
	ma, mb := settingsOf(a), settingsOf(b)
	if ma == nil || mb == nil {
		return false
	}
	return maps.EqualFunc(ma, mb, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) })
}

// settingsOf is a revision's Spec by key, without its rollback; nil if unreadable.
func settingsOf(r store.Revision) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal([]byte(r.Spec), &m) != nil || m == nil {
		return nil
	}
	delete(m, rollbackKey)
	return m
}

// rollbackOf is what a revision says of the rollback that recorded it, nil if none did.
func rollbackOf(r store.Revision) *api.RollbackRecord {
	var rs struct {
		Rollback *api.RollbackRecord `json:"rollback"`
	}
	if json.Unmarshal([]byte(r.Spec), &rs) == nil && rs.Rollback != nil {
		return rs.Rollback
	}
	return legacyRollback(r.AppliedBy)
}

// legacyBy matches the applied_by of a revision recorded by a rollback before kiln
// recorded rollbacks in the revision's spec: "USER (rollback to revision N)". Such a
// revision still counts as a rollback, so an apply does not silently undo it.
var legacyBy = regexp.MustCompile(`^(.*) \(rollback to revision (\d+)\)$`)

func legacyRollback(appliedBy string) *api.RollbackRecord {
	m := legacyBy.FindStringSubmatch(appliedBy)
	if m == nil {
		return nil
	}
	to, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return nil
	}
	return &api.RollbackRecord{To: to, By: m[1]}
}

// rollbackAppliedBy is the applied_by of a revision a rollback records, as history
// shows it.
func rollbackAppliedBy(rb api.RollbackRecord) string {
	return fmt.Sprintf("%s (rollback to revision %d)", rb.By, rb.To)
}
