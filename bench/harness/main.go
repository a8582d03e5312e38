package harness

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Scenario measures one thing; it returns the result even when some runs failed
// (they are listed in it), and an error only when nothing could be measured.
type Scenario func(ctx context.Context, e *Env, o Options) (*Result, error)

// Scenarios are kiln-bench's scenarios, by name.
var Scenarios = map[string]Scenario{
	"rollout":   Rollout,
	"heal":      Heal,
	"idle":      Idle,
	"bake":      Bake,
	"pipeline":  Pipeline,
	"python":    Python,
	"dashboard": Dashboard,
	"images":    Images,
	"door":      Door,
	"kube":      Kube,
}

// Options are the settings every scenario takes.
type Options struct {
	Runs int
	// Systems, if set, limits a scenario to these of its systems (by name), and Cases
	// to these of its cases.
	Systems, Cases []string
}

func (o Options) want(system string) bool {
	if len(o.Systems) == 0 {
		return true
	}
	for _, s := range o.Systems {
		if s == system {
			return true
		}
	}
	return false
}

// newResult starts the result of a scenario: the machine and kiln are described now.
func (e *Env) newResult(ctx context.Context, scenario, title string, o Options) *Result {
	return &Result{Scenario: scenario, Title: title, Date: time.Now().UTC(), Machine: Describe(ctx), Kiln: DescribeKiln(ctx, e.Source), Runs: o.Runs}
}

func (e *Env) finish(ctx context.Context, r *Result) *Result {
	r.Machine.LoadAfter = Busy(ctx)
	r.WallSeconds = time.Since(r.Date).Seconds()
	return r
}

// wantCase reports whether a case (of the bake scenario) is asked for: all of them
// unless -cases names some.
func (o Options) wantCase(c string) bool {
	if len(o.Cases) == 0 {
		return true
	}
	for _, x := range o.Cases {
		if x == c {
			return true
		}
	}
	return false
}

const usage = `usage:
  kiln-bench SCENARIO [-runs N] [-out DIR] [-systems "a b"] [-cases "a b"] [-keep]
  kiln-bench render FILE.json...

scenarios: %s
`

// Main is kiln-bench: it runs a scenario, writes its JSON and Markdown to -out, and
// prints the Markdown; or renders result files again.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	names := make([]string, 0, len(Scenarios))
	for n := range Scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, strings.Join(names, ", "))
		return errors.New("no scenario")
	}
	if args[0] == "render" {
		if len(args) < 2 {
			return errors.New("render: which file?")
		}
		for _, f := range args[1:] {
			r, err := Load(f)
			if err != nil {
				return err
			}
			fmt.Fprint(stdout, Markdown(r))
		}
		return nil
	}
	run, ok := Scenarios[args[0]]
	if !ok {
		fmt.Fprintf(stderr, usage, strings.Join(names, ", "))
		return fmt.Errorf("unknown scenario %q", args[0])
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 3, "runs per series")
	out := fs.String("out", "bench/results", "where results are written")
	systems := fs.String("systems", "", "only these systems of the scenario (space-separated)")
	cases := fs.String("cases", "", "only these cases of the scenario (space-separated; bake: cold cold-go noop edit; rollout: fleet sizes, 4 10; pipeline: cli; door: http https h2; kube: 10 100 watch)")
	keep := fs.Bool("keep", false, "keep the scratch directory")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	e, err := Setup(ctx, root, log)
	if err != nil {
		return err
	}
	e.Keep = *keep
	defer e.Close()
	r, err := run(ctx, e, Options{Runs: *runs, Systems: strings.Fields(*systems), Cases: strings.Fields(*cases)})
	if err != nil {
		return err
	}
	dir := *out
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	path, err := r.Write(dir)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, Markdown(r))
	log.Info("results written", "json", path)
	return nil
}

// repoRoot is the root of the kiln repository the harness runs in.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository (go list -m): %w", err)
	}
	root := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(root, "cmd", "kiln")); err != nil {
		return "", fmt.Errorf("%s is not kiln's repository: %w", root, err)
	}
	return root, nil
}
