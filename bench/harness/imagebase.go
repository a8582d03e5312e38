package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// The Debian base the images scenario's Dockerfiles are built FROM: a stand-in for
// debian:bookworm-slim, which cannot be pulled here (no registry is reachable).
const (
	baseSuite  = "bookworm"
	baseMirror = "http://deb.debian.org/debian"
	baseEpoch  = "1700000000"
)

// baseSlimify turns a debootstrap --variant=minbase root filesystem ($1) into what
// debian:bookworm-slim is (debuerreotype's slim variant): dpkg told to leave out
// documentation, manuals and translations, and those already installed removed; apt
// configured as in Docker's Debian images (no .debs or package caches kept, no
// translations fetched, gzipped indexes); the archive's three bookworm repositories
// (bookworm, bookworm-updates, bookworm-security: those kiln's lock files pin from);
// nothing a container gets from its engine or that differs from one build to the next
// (lists, logs, caches, device nodes, machine-id). Part of the tarball's cache key.
const baseSlimify = `set -e
cd "$1"
cat >etc/dpkg/dpkg.cfg.d/docker <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
echo force-unsafe-io >etc/dpkg/dpkg.cfg.d/docker-apt-speedup
cat >etc/apt/apt.conf.d/docker-clean <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Apt::AutoRemove::SuggestsImportant "false";' >etc/apt/apt.conf.d/docker-autoremove-suggests
echo 'Acquire::GzipIndexes "true";' >etc/apt/apt.conf.d/docker-gzip-indexes
echo 'Acquire::Languages "none";' >etc/apt/apt.conf.d/docker-no-languages
rm -f etc/apt/sources.list
cat >etc/apt/sources.list.d/debian.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
find usr/share/doc -mindepth 1 -not -type d -not -name copyright -delete
find usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf usr/share/groff/* usr/share/info/* usr/share/linda/* usr/share/lintian/* usr/share/man/*
find usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf var/lib/apt/lists/* var/cache/apt/* var/cache/ldconfig/aux-cache var/log/* tmp/* var/tmp/* dev/* run/*
rm -f etc/resolv.conf etc/hostname etc/hosts etc/machine-id var/lib/dbus/machine-id
rm -f etc/passwd- etc/group- etc/shadow- etc/gshadow- var/lib/dpkg/*-old var/cache/debconf/*-old
days=$(($2 / 86400))
sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$days:/" etc/shadow
`

// debianBase is the tarball of the slim Debian base, its path in the cache and
// whether this run built it.
type debianBase struct {
	Tar   string
	Built time.Duration // 0 when the cached tarball was reused
}

// baseCacheDir is where the base tarball is kept, outside the repository, as
// scripts/debian-python-base keeps its own: KILN_TEST_CACHE, else /var/cache/kiln-test
// as root, else $XDG_CACHE_HOME/kiln-test.
func baseCacheDir() (string, error) {
	if d := os.Getenv("KILN_TEST_CACHE"); d != "" {
		return d, nil
	}
	if os.Geteuid() == 0 {
		return "/var/cache/kiln-test", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the Debian base (set KILN_TEST_CACHE): %w", err)
	}
	return filepath.Join(d, "kiln-test"), nil
}

// baseKey names the tarball by its inputs: the recipe, the suite, the mirror, the
// architecture and the epoch its file times are clamped to.
func baseKey(arch string) string {
	h := sha256.New()
	for _, s := range []string{"debootstrap --variant=minbase", baseSlimify, baseSuite, baseMirror, arch, baseEpoch} {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// debianArchOf is Debian's name for this machine's architecture.
func debianArchOf(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "s390x", "riscv64":
		return goarch, nil
	case "386":
		return "i386", nil
	case "ppc64le":
		return "ppc64el", nil
	}
	return "", fmt.Errorf("no Debian architecture known for GOARCH %s", goarch)
}

// ensureDebianBase returns the slim bookworm base tarball, building it first with
// debootstrap when the cache has none for these inputs (a minute or two; needs root,
// or sudo, and Debian's archive). debootstrap is installed with apt-get when missing.
func (e *Env) ensureDebianBase(ctx context.Context) (debianBase, error) {
	arch, err := debianArchOf(runtime.GOARCH)
	if err != nil {
		return debianBase{}, err
	}
	dir, err := baseCacheDir()
	if err != nil {
		return debianBase{}, err
	}
	out := filepath.Join(dir, fmt.Sprintf("debian-slim-%s-%s-%s.tar", baseSuite, arch, baseKey(arch)))
	if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
		e.Log.Info("reusing the Debian base", "tar", out)
		return debianBase{Tar: out}, nil
	}
	t0 := time.Now()
	var sudo []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return debianBase{}, fmt.Errorf("building the Debian base with debootstrap needs root: run as root, or install sudo")
		}
		sudo = []string{"sudo"}
	}
	run := func(dir string, name string, args ...string) (string, error) {
		if sudo != nil {
			args, name = append([]string{name}, args...), "sudo"
		}
		return e.Run(ctx, dir, nil, name, args...)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		e.Log.Info("installing debootstrap (apt-get)")
		if _, err := run("/", "apt-get", "install", "-y", "-qq", "debootstrap"); err != nil {
			if _, err := run("/", "apt-get", "update", "-qq"); err != nil {
				return debianBase{}, fmt.Errorf("installing debootstrap: %w", err)
			}
			if _, err := run("/", "apt-get", "install", "-y", "-qq", "debootstrap"); err != nil {
				return debianBase{}, fmt.Errorf("installing debootstrap: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return debianBase{}, fmt.Errorf("creating the cache directory of the Debian base: %w", err)
	}
	work, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return debianBase{}, fmt.Errorf("creating the Debian base's build directory: %w", err)
	}
	defer run("/", "rm", "-rf", work)
	root := filepath.Join(work, "rootfs")
	e.Log.Info("building the Debian base (debootstrap, a minute or two)", "suite", baseSuite, "arch", arch, "mirror", baseMirror, "into", out)
	if _, err := run(work, "debootstrap", "--variant=minbase", "--arch="+arch, baseSuite, root, baseMirror); err != nil {
		return debianBase{}, fmt.Errorf("debootstrap of the Debian base (is %s reachable?): %w", baseMirror, err)
	}
	if _, err := run(work, "sh", "-c", baseSlimify, "sh", root, baseEpoch); err != nil {
		return debianBase{}, fmt.Errorf("slimming the Debian base: %w", err)
	}
	tmp := filepath.Join(work, "rootfs.tar")
	if _, err := run(work, "env", "LC_ALL=C", "tar", "--create", "--file="+tmp, "--directory="+root,
		"--sort=name", "--format=gnu", "--numeric-owner", "--no-xattrs", "--no-acls", "--no-selinux",
		"--mtime=@"+baseEpoch, "--clamp-mtime", "."); err != nil {
		return debianBase{}, fmt.Errorf("packing the Debian base: %w", err)
	}
	if sudo != nil {
		if _, err := run(work, "chown", fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()), tmp); err != nil {
			return debianBase{}, err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return debianBase{}, fmt.Errorf("storing the Debian base: %w", err)
	}
	b := debianBase{Tar: out, Built: time.Since(t0)}
	e.Log.Info("built the Debian base", "tar", out, "seconds", b.Built.Seconds())
	return b, nil
}

// importBase imports the base tarball into Docker as tag, with the config
// debian:bookworm-slim has (its PATH, `bash` as its command), and a label naming the
// run so that it is removed at the end.
func (e *Env) importBase(ctx context.Context, b debianBase, tag string) error {
	_, err := e.Docker(ctx, "import",
		"--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--change", `CMD ["bash"]`,
		"--change", "LABEL kiln-bench="+e.ID,
		b.Tar, tag)
	if err != nil {
		return fmt.Errorf("importing the Debian base %s into Docker: %w", b.Tar, err)
	}
	return nil
}
