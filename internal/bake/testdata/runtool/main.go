// Command runtool is the one program of the run step tests' builder image: a static
// binary that does what a build command would, in steps separated by "--".
//
//	count FILE        append a line to FILE (how many times the command ran)
//	write DIR         write a tree in a random order, with random times and modes
//	build IN OUT      "compile" IN: OUT is this program, which prints IN's content
//	env FILE          write the environment, sorted, to FILE
//	dial ADDR         connect to ADDR over TCP
//	symlink T NAME    make the symlink NAME to T
//	fail N            print N numbered lines and exit 3
//
// Run under any other name (as a built program), it prints the message built into it.
package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const marker = "\n--runtool-message--\n"

func main() {
	if filepath.Base(os.Args[0]) != "runtool" && filepath.Base(os.Args[0]) != "tool" {
		self, err := os.ReadFile("/proc/self/exe")
		check(err)
		if i := bytes.LastIndex(self, []byte(marker)); i >= 0 {
			os.Stdout.Write(self[i+len(marker):])
			return
		}
		fmt.Fprintln(os.Stderr, "no message built in")
		os.Exit(2)
	}
	args := os.Args[1:]
	for len(args) > 0 {
		i := slices.Index(args, "--")
		if i < 0 {
			i = len(args)
		}
		do(args[:i])
		args = args[min(i+1, len(args)):]
	}
}

func do(a []string) {
	switch a[0] {
	case "count":
		f, err := os.OpenFile(a[1], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		check(err)
		fmt.Fprintln(f, "ran")
		check(f.Close())
	case "write":
		write(a[1])
	case "build":
		msg, err := os.ReadFile(a[1])
		check(err)
		self, err := os.ReadFile("/proc/self/exe")
		check(err)
		check(os.MkdirAll(filepath.Dir(a[2]), 0o755))
		check(os.WriteFile(a[2], append(append(self, marker...), msg...), 0o755))
	case "env":
		env := os.Environ()
		slices.Sort(env)
		check(os.WriteFile(a[1], []byte(strings.Join(env, "\n")+"\n"), 0o644))
	case "dial":
		c, err := net.DialTimeout("tcp", a[1], 2*time.Second)
		check(err)
		c.Close()
	case "symlink":
		check(os.Symlink(a[1], a[2]))
	case "fail":
		n, _ := strconv.Atoi(a[1])
		for i := 0; i < n; i++ {
			fmt.Printf("line %d\n", i)
		}
		os.Exit(3)
	default:
		fmt.Fprintf(os.Stderr, "unknown action %q\n", a[0])
		os.Exit(2)
	}
}

// write makes the same tree every time, but in another order, with other times and an
// umask's modes: what a build leaves that a layer must not depend on.
func write(dir string) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	files := []string{"a.txt", "b/c.txt", "b/d/e.txt", "z.txt", "m/n.txt"}
	r.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	for _, f := range files {
		p := filepath.Join(dir, f)
		check(os.MkdirAll(filepath.Dir(p), 0o755))
		check(os.WriteFile(p, []byte("content of "+f+"\n"), 0o644))
	}
	check(os.Chmod(filepath.Join(dir, "z.txt"), 0o4750)) // set-uid: not kept
	check(os.Symlink("a.txt", filepath.Join(dir, "link")))
	check(os.Link(filepath.Join(dir, "b/c.txt"), filepath.Join(dir, "b/hard.txt")))
	check(os.Link(filepath.Join(dir, "b/c.txt"), filepath.Join(dir, "a-hard.txt")))
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		t := time.Unix(r.Int63n(1<<31), 0)
		os.Chtimes(p, t, t)
		return nil
	})
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
