package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRootForTest is the repository, two directories up from this package.
func repoRootForTest(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "examples")); err != nil {
		t.Fatalf("no examples/ at %s: %v", root, err)
	}
	return root
}

// hclField is the value of `name = …` on one line of kiln.hcl.
func hclField(t *testing.T, spec, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*(.+?)\s*$`).FindStringSubmatch(spec)
	if m == nil {
		t.Fatalf("kiln.hcl has no %s", name)
	}
	return m[1]
}

// dockerfileLine is the argument of the last instruction ins in a Dockerfile.
func dockerfileLine(df, ins string) string {
	var last string
	for _, l := range strings.Split(df, "\n") {
		if rest, ok := strings.CutPrefix(l, ins+" "); ok {
			last = rest
		}
	}
	return last
}

// Each example's Dockerfile installs the packages its lock pins and gives the image
// kiln.hcl's entrypoint, user, workdir, port and env: when an example changes, this
// fails before a run measures two different images.
func TestImageDockerfilesMirrorExamples(t *testing.T) {
	root := repoRootForTest(t)
	seen := 0
	for _, ex := range imageExamples {
		b, err := os.ReadFile(filepath.Join(root, "examples", ex.name, "kiln.hcl"))
		if err != nil {
			if ex.optional {
				continue
			}
			t.Fatalf("%s: %v", ex.name, err)
		}
		seen++
		spec := string(b)
		if err := checkDockerfilePackages(root, ex); err != nil {
			t.Errorf("%s: %v", ex.name, err)
		}
		df, err := renderDockerfile(ex.dockerfile, imageDockerfileData{Base: "bench-1-images/debian:bookworm-slim"})
		if err != nil {
			t.Fatalf("%s: %v", ex.name, err)
		}
		if !strings.HasPrefix(df, "FROM bench-1-images/debian:bookworm-slim") {
			t.Errorf("%s: the Dockerfile does not start FROM the base:\n%s", ex.name, df)
		}
		if ex.name == "c" {
			continue // a builder stage and scratch: its config is compared at run time
		}
		var kilnEntry, dockerEntry []string
		if err := json.Unmarshal([]byte(hclField(t, spec, "entrypoint")), &kilnEntry); err != nil {
			t.Fatalf("%s: kiln.hcl's entrypoint: %v", ex.name, err)
		}
		if err := json.Unmarshal([]byte(dockerfileLine(df, "ENTRYPOINT")), &dockerEntry); err != nil {
			t.Fatalf("%s: the Dockerfile's ENTRYPOINT: %v", ex.name, err)
		}
		if !slices.Equal(kilnEntry, dockerEntry) {
			t.Errorf("%s: entrypoint %q in kiln.hcl, %q in the Dockerfile", ex.name, kilnEntry, dockerEntry)
		}
		for _, c := range [][2]string{{"user", "USER"}, {"workdir", "WORKDIR"}} {
			if k, d := strings.Trim(hclField(t, spec, c[0]), `"`), dockerfileLine(df, c[1]); k != d {
				t.Errorf("%s: %s %q in kiln.hcl, %s %q in the Dockerfile", ex.name, c[0], k, c[1], d)
			}
		}
		if k, d := strings.Trim(hclField(t, spec, "expose"), "[]"), dockerfileLine(df, "EXPOSE"); k != d {
			t.Errorf("%s: expose %q in kiln.hcl, EXPOSE %q in the Dockerfile", ex.name, k, d)
		}
		env := regexp.MustCompile(`(?ms)^\s*env = \{\n(.*?)^\s*\}`).FindStringSubmatch(spec)
		if env == nil {
			t.Fatalf("%s: kiln.hcl has no env block", ex.name)
		}
		var kilnEnv []string
		for _, l := range strings.Split(strings.TrimSpace(env[1]), "\n") {
			k, v, _ := strings.Cut(l, "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			if v == "var.version" {
				v = "dev" // the variable's default
			}
			kilnEnv = append(kilnEnv, strings.TrimSpace(k)+"="+v)
		}
		dockerEnv := strings.Fields(dockerfileLine(df, "ENV"))
		slices.Sort(kilnEnv)
		slices.Sort(dockerEnv)
		if !slices.Equal(kilnEnv, dockerEnv) {
			t.Errorf("%s: env %q in kiln.hcl, %q in the Dockerfile", ex.name, kilnEnv, dockerEnv)
		}
		if !strings.HasSuffix(df, "COPY app /app\n") {
			t.Errorf("%s: the app is not copied last (an app change would rebuild more than its layer):\n%s", ex.name, df)
		}
	}
	if seen < 2 {
		t.Errorf("only %d examples on Debian packages found; python and node at least", seen)
	}
}

func TestDockerfilePackages(t *testing.T) {
	df := "FROM b AS build\nRUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*\nFROM b\nRUN apt-get install -y -q python3 gcc\n"
	if got := dockerfilePackages(df); !slices.Equal(got, []string{"gcc", "libc6-dev", "python3"}) {
		t.Errorf("dockerfilePackages = %q", got)
	}
	root := repoRootForTest(t)
	wrong := imageExamples[0]
	wrong.dockerfile = strings.Replace(wrong.dockerfile, "python3", "python3-minimal", 1)
	if err := checkDockerfilePackages(root, wrong); err == nil || !strings.Contains(err.Error(), "python3-minimal") {
		t.Errorf("a Dockerfile installing other packages than the lock pins was taken: %v", err)
	}
	if _, err := renderDockerfile("FROM {{.Nope}}\n", imageDockerfileData{Base: "b"}); err == nil {
		t.Error("a Dockerfile template naming an unknown field was rendered")
	}
}

func TestLockedPackages(t *testing.T) {
	lock := "debian \"build\" {\n  arch = \"amd64\"\n  packages = [\"gcc\", \"libc6-dev\"]\n\n  package \"gcc\" {\n  }\n}\n\ndebian \"web\" {\n  packages     = [\"python3\"]\n}\n"
	got := lockedPackages(lock)
	if len(got) != 2 || !slices.Equal(got["build"], []string{"gcc", "libc6-dev"}) || !slices.Equal(got["web"], []string{"python3"}) {
		t.Errorf("lockedPackages = %q", got)
	}
}

// The example's spec and lock, renamed, name only the new images, and the lock's
// packages are untouched.
func TestRenameImages(t *testing.T) {
	root := repoRootForTest(t)
	spec, err := os.ReadFile(filepath.Join(root, "examples", "python", "kiln.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join(root, "examples", "python", "kiln.lock.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s, l, served, err := renameImages(string(spec), string(lock), "bench-7")
	if err != nil {
		t.Fatal(err)
	}
	if served != "bench-7-python" {
		t.Errorf("served image %q", served)
	}
	for _, want := range []string{`image "bench-7-python" {`, "image    = image.bench-7-python\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("the renamed spec lacks %q", want)
		}
	}
	if strings.Contains(s, "image.python") || strings.Contains(s, `image "python"`) {
		t.Error("the renamed spec still names the image python")
	}
	if !strings.Contains(l, `debian "bench-7-python" {`) || strings.Contains(l, `debian "python"`) {
		t.Error("the lock's set was not renamed")
	}
	if strings.Replace(l, `debian "bench-7-python" {`, `debian "python" {`, 1) != string(lock) {
		t.Error("renaming changed more of the lock than its set's label")
	}

	two := "image \"build\" {\n  from = \"scratch\"\n}\n\nimage \"hello\" {\n  from = \"scratch\"\n  copy \"/out/hello\" {\n    from = image.build\n  }\n}\n"
	s, l, served, err = renameImages(two, "debian \"build\" {\n}\n", "p")
	if err != nil {
		t.Fatal(err)
	}
	if served != "p-hello" || !strings.Contains(s, "from = image.p-build\n") || !strings.Contains(s, `image "p-build" {`) || !strings.Contains(l, `debian "p-build" {`) {
		t.Errorf("without a service: served %q, spec:\n%s\nlock:\n%s", served, s, l)
	}
	if _, _, _, err := renameImages("service \"x\" {\n}\n", "debian \"x\" {\n}\n", "p"); err == nil {
		t.Error("a spec without images was renamed")
	}
}

func TestAptFetched(t *testing.T) {
	out := "Step 2/8 : RUN apt-get update && apt-get install -y python3\n" +
		"Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]\n" +
		"Fetched 9,183 kB in 2s (4,120 kB/s)\n" +
		"Need to get 17.6 MB of archives.\n" +
		"\x1b[0mFetched 17.6 MB in 1s (12.0 MB/s)\n" +
		"Fetched 512 B in 0s (1,024 B/s)\n"
	n, ok := aptFetched(out)
	if !ok || n != 9183e3+17.6e6+512 {
		t.Errorf("aptFetched = %v, %v; want %v", n, ok, 9183e3+17.6e6+512)
	}
	if _, ok := aptFetched("Step 1/2 : FROM scratch\n"); ok {
		t.Error("aptFetched found a download in output without one")
	}
}

func tarOf(t *testing.T, files map[string]string, order ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range order {
		if strings.HasSuffix(name, "/") {
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
			continue
		}
		c := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(c))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(c))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Installed packages in status and each package of status.d count; removed packages,
// md5sums and info files do not.
func TestCountDpkg(t *testing.T) {
	files := map[string]string{
		"dpkg/status": "Package: base-files\nStatus: install ok installed\nVersion: 12.4\n\n" +
			"Package: bash\nStatus: install ok installed\nDescription: GNU Bourne Again SHell\n continued line\n\n" +
			"Package: old\nStatus: deinstall ok config-files\n",
		"dpkg/status.d/python3":         "Package: python3\nVersion: 3.11.2-1+b1\n",
		"dpkg/status.d/python3.md5sums": "d41d8cd98f00b204e9800998ecf8427e  usr/bin/python3\n",
		"dpkg/status.d/libc6":           "Package: libc6\nVersion: 2.36-9\n",
		"dpkg/info/bash.list":           "Package: not-one\n",
	}
	b := tarOf(t, files, "dpkg/", "dpkg/info/", "dpkg/info/bash.list", "dpkg/status", "dpkg/status.d/", "dpkg/status.d/libc6", "dpkg/status.d/python3", "dpkg/status.d/python3.md5sums")
	n, err := countDpkg(bytes.NewReader(b))
	if err != nil || n != 4 {
		t.Errorf("countDpkg = %d, %v; want 4", n, err)
	}
	if _, err := countDpkg(strings.NewReader("not a tar archive at all, but long enough to be read as a header block" + strings.Repeat("x", 600))); err == nil {
		t.Error("countDpkg took something that is not a tar archive")
	}
}

func TestSBOMDebPackages(t *testing.T) {
	doc := `{"bomFormat":"CycloneDX","specVersion":"1.5","components":[
		{"type":"library","name":"python3","purl":"pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64"},
		{"type":"library","name":"libc6","purl":"pkg:deb/debian/libc6@2.36-9?arch=amd64"},
		{"type":"library","name":"golang.org/x/net","purl":"pkg:golang/golang.org/x/net@v0.61.0"},
		{"type":"container","name":"base","purl":"pkg:oci/base","components":[
			{"type":"library","name":"zlib1g","purl":"pkg:deb/debian/zlib1g@1.2.13?arch=amd64"},
			{"type":"library","name":"libc6","purl":"pkg:deb/debian/libc6@2.36-9?arch=amd64"}]}]}`
	n, err := sbomDebPackages([]byte(doc))
	if err != nil || n != 3 {
		t.Errorf("sbomDebPackages = %d, %v; want 3", n, err)
	}
	if _, err := sbomDebPackages([]byte(`{"components":[]}`)); err == nil {
		t.Error("a document that is not CycloneDX was counted")
	}
}

// The gzipped size of docker save's layers is what gzip at kiln's level makes of each
// layer the manifest names, wherever manifest.json comes in the archive.
func TestGzippedLayers(t *testing.T) {
	layer := strings.Repeat("usr/bin/python3 ", 4000) + "some less regular bytes: 3f2a9c1b7d4e5566778899"
	files := map[string]string{
		"abc/layer.tar":  layer,
		"abc/json":       `{"id":"abc"}`,
		"cfg.json":       `{"architecture":"amd64"}`,
		"manifest.json":  `[{"Config":"cfg.json","RepoTags":null,"Layers":["abc/layer.tar"]}]`,
		"repositories":   "{}",
		"unused.tar":     strings.Repeat("z", 5000),
		"abc/VERSION":    "1.0",
		"oci/index.json": "{}",
	}
	var want bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&want, gzip.BestSpeed)
	zw.Write([]byte(layer))
	zw.Close()
	for _, order := range [][]string{
		{"abc/", "abc/VERSION", "abc/json", "abc/layer.tar", "cfg.json", "unused.tar", "manifest.json", "repositories"},
		{"manifest.json", "abc/layer.tar", "cfg.json", "unused.tar"},
	} {
		n, err := gzippedLayers(bytes.NewReader(tarOf(t, files, order...)))
		if err != nil || n != int64(want.Len()) {
			t.Errorf("gzippedLayers = %d, %v; want %d", n, err, want.Len())
		}
	}
	if _, err := gzippedLayers(bytes.NewReader(tarOf(t, files, "manifest.json", "cfg.json"))); err == nil {
		t.Error("an archive without the layer its manifest names was measured")
	}
}

func TestManifestLayerBytes(t *testing.T) {
	n, err := manifestLayerBytes([]byte(`{"schemaVersion":2,"config":{"size":900},"layers":[{"size":23000000},{"size":1200}]}`))
	if err != nil || n != 23001200 {
		t.Errorf("manifestLayerBytes = %d, %v", n, err)
	}
	if _, err := manifestLayerBytes([]byte("<html>")); err == nil {
		t.Error("manifestLayerBytes took something that is not JSON")
	}
}

func TestConfigDiff(t *testing.T) {
	kiln, err := parseImageConfig([]byte(`{"Entrypoint":["/usr/bin/python3","-u","/app/app.py"],"Cmd":null,"Env":["PATH=/usr/bin:/bin","VERSION=dev"],"User":"65532:65532","WorkingDir":"/app","ExposedPorts":{"8080/tcp":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	docker, err := parseImageConfig([]byte(`{"Hostname":"","Entrypoint":["/usr/bin/python3","-u","/app/app.py"],"Env":["VERSION=dev","PATH=/usr/bin:/bin"],"User":"65532:65532","WorkingDir":"/app","ExposedPorts":{"8080/tcp":{}},"Labels":{"x":"y"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if d := configDiff(kiln, docker); len(d) != 0 {
		t.Errorf("equal configs differ: %q", d)
	}
	docker.Cmd = []string{"bash"}
	docker.ExposedPorts["9090/tcp"] = struct{}{}
	docker.Env = append(docker.Env, "LANG=C.UTF-8")
	d := configDiff(kiln, docker)
	if len(d) != 3 || !strings.HasPrefix(d[0], "command") || !strings.HasPrefix(d[1], "env") || !strings.Contains(d[2], "9090/tcp") {
		t.Errorf("configDiff = %q", d)
	}
}

func TestRemoveAllBut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".kiln")
	for _, f := range []string{"lock", "images/index.json", "cache/layers/k.json", "cache/debian/sha256/aa", "cache/debian/sha256/bb", "tmp/x"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(p, f); err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(dir, "cache", "debian")
	if err := removeAllBut(dir, keep); err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, rel)
		}
		return err
	})
	if !slices.Equal(left, []string{"cache/debian/sha256/aa", "cache/debian/sha256/bb"}) {
		t.Errorf("left %q", left)
	}
	if n, err := treeBytes(keep); err != nil || n != int64(len("cache/debian/sha256/aa")*2) {
		t.Errorf("treeBytes = %d, %v", n, err)
	}
	if err := removeAllBut(filepath.Join(dir, "missing"), keep); err != nil {
		t.Errorf("removeAllBut of a missing directory: %v", err)
	}
}

func TestImageSelection(t *testing.T) {
	ex, cases, err := imageSelection([]string{"python", "cold", "edit"})
	if err != nil || !slices.Equal(ex, []string{"python"}) || !slices.Equal(cases, []string{"cold", "edit"}) {
		t.Errorf("imageSelection = %q, %q, %v", ex, cases, err)
	}
	if _, _, err := imageSelection([]string{"noop"}); err == nil || !strings.Contains(err.Error(), "cold cold-debs edit size") {
		t.Errorf("an unknown case was taken: %v", err)
	}
}

// Every edit writes new content on top of the committed file; resetting restores it.
func TestEditor(t *testing.T) {
	f := filepath.Join(t.TempDir(), "greeting.txt")
	ed := &editor{file: f, baseline: []byte("Hello\n"), line: textEdit}
	seen := map[string]bool{}
	for range 3 {
		if err := ed.prepare(imgEdit); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(f)
		if !strings.HasPrefix(string(b), "Hello\n") || seen[string(b)] {
			t.Errorf("edit wrote %q", b)
		}
		seen[string(b)] = true
	}
	if err := ed.prepare(imgCold); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "Hello\n" {
		t.Errorf("reset left %q", b)
	}
}

func TestBaseKey(t *testing.T) {
	a, b := baseKey("amd64"), baseKey("arm64")
	if len(a) != 16 || a == b || a != baseKey("amd64") {
		t.Errorf("baseKey: %s, %s", a, b)
	}
	if got, err := debianArchOf("ppc64le"); err != nil || got != "ppc64el" {
		t.Errorf("debianArchOf(ppc64le) = %q, %v", got, err)
	}
	if _, err := debianArchOf("wasm"); err == nil {
		t.Error("debianArchOf(wasm) named an architecture")
	}
}
