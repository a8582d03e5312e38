package secret

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpenDigest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFile)
	k, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
	value := []byte("hunter2-canary")
	s1, s2 := k.Seal(value), k.Seal(value)
	if s1 == s2 {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if strings.Contains(s1, "hunter2") {
		t.Error("the sealed value shows the plain one")
	}
	got, err := k.Open(s1)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// The key is read back the same from its file.
	k2, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(s2); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Open with the reloaded key = %q, %v", got, err)
	}
	if k.Digest(value) != k2.Digest(value) || k.Digest(value) == k.Digest([]byte("other")) {
		t.Error("digests are not a function of the value")
	}
	other, _ := LoadKey(filepath.Join(dir, "other.key"))
	if other.Digest(value) == k.Digest(value) {
		t.Error("the digest does not depend on the key: guesses could be checked against it")
	}
	if _, err := other.Open(s1); !errors.Is(err, ErrSealed) {
		t.Errorf("Open with another key = %v, want ErrSealed", err)
	}
	tampered := s1[:len(s1)-2] + "AA"
	if _, err := k.Open(tampered); !errors.Is(err, ErrSealed) {
		t.Errorf("Open of an altered value = %v, want ErrSealed", err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "db.txt"), []byte("from-file\n"), 0o600)
	t.Setenv("KILN_TEST_SECRET", "from-env")
	ctx := context.Background()
	for _, c := range []struct {
		src  Source
		want string
	}{
		{Source{Name: "f", File: "db.txt", Dir: dir}, "from-file\n"},
		{Source{Name: "e", Env: "KILN_TEST_SECRET"}, "from-env"},
		{Source{Name: "c", Command: []string{"printf", "from-command\n"}, Dir: dir}, "from-command"},
	} {
		got, err := Resolve(ctx, c.src)
		if err != nil || string(got) != c.want {
			t.Errorf("%s: Resolve = %q, %v; want %q", c.src.Describe(), got, err, c.want)
		}
	}
	for _, src := range []Source{
		{Name: "missing", File: "nope", Dir: dir},
		{Name: "dir", File: dir},
		{Name: "device", File: "/dev/zero"},
		{Name: "unset", Env: "KILN_TEST_UNSET_SECRET"},
		{Name: "fails", Command: []string{"sh", "-c", "printf 'leak%s' ed-value >&2; exit 3"}},
		{Name: "none"},
	} {
		_, err := Resolve(ctx, src)
		if err == nil {
			t.Errorf("%s: no error", src.Name)
			continue
		}
		if !strings.Contains(err.Error(), `"`+src.Name+`"`) || strings.Contains(err.Error(), "leaked-value") {
			t.Errorf("%s: error %q should name the secret and quote nothing it printed", src.Name, err)
		}
	}
	big, err := Resolve(ctx, Source{Name: "big", Command: []string{"head", "-c", "3000000", "/dev/zero"}})
	if err == nil {
		t.Errorf("a value of %d bytes was accepted", len(big))
	}
}
