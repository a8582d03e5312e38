package driver

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The fields ServerSpec had when identities were fixed; every later one is omitempty.
var requiredFields = map[string]bool{"Service": true, "Revision": true, "Image": true, "Port": true, "Resources": true}

// TestHashIsStable: a server's identity does not change with kiln. A spec of every
// field's zero value beyond the first ones hashes as it did, and a new field that is not
// omitempty (which would change every server's identity, and so replace the whole fleet
// at an upgrade) fails here.
func TestHashIsStable(t *testing.T) {
	ty := reflect.TypeOf(ServerSpec{})
	for i := range ty.NumField() {
		f := ty.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || requiredFields[f.Name] {
			continue
		}
		if !strings.Contains(tag, ",omitempty") {
			t.Errorf("ServerSpec.%s is not omitempty: adding it changes every server's identity", f.Name)
		}
	}
	// The identity of a server as this version of kiln creates it (and the one before:
	// a service without env keeps its servers across that upgrade): if this changes,
	// running fleets are replaced on upgrade.
	basic := ServerSpec{Service: "web", Image: "sha256:aaaa", Port: 8080, Resources: DefaultResources}
	if got, want := basic.Hash(), "d4533fd88f672df7928e72f27b027713cb684e1f9b61ae64836fcce6264d96dc"; got != want {
		t.Errorf("the hash of a basic spec is %s, was %s: an upgrade would replace every server", got, want)
	}
	full := basic
	full.Project, full.Command, full.Args, full.User = "p", []string{"/app"}, []string{"-v"}, "65532"
	full.Digests = map[string]string{"env:A": "hmac-sha256:00"}
	full.Init, full.StopSignal, full.StopTimeout, full.Writable = true, "SIGINT", time.Second, []string{"/tmp"}
	if full.Hash() == basic.Hash() {
		t.Error("the fields do not enter the hash")
	}
	full.Revision = 9
	if h := full.Hash(); h != func() string { full.Revision = 0; return full.Hash() }() {
		t.Error("the revision enters the hash")
	}
}
