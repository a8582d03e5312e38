package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/statedir"
)

// exitError ends a command with a status code; its message, if any, was already shown.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// globals are the flags every verb shares.
type globals struct {
	chdir    string
	file     string
	stateDir string
	vars     []string
	noColor  bool
	// confine reads the spec as a pipeline reads a commit's: every path inside the
	// spec's directory, Go builds in the sandbox.
	confine bool

	stdin          io.Reader
	stdout, stderr io.Writer
}

// ErrInterrupted is the cause of the context of a verb the user stopped with Ctrl-C
// (SIGINT); ErrTerminated of one asked to stop by SIGTERM (as kiln stop sends).
var (
	ErrInterrupted = errors.New("interrupted")
	ErrTerminated  = errors.New("terminated")
)

// Signals returns the context kiln's verbs run under. The first SIGINT or SIGTERM ends
// it, with ErrInterrupted or ErrTerminated as its cause, and prints to stderr what the
// verb does about it (see noteInterrupt) and that a second Ctrl-C exits at once; a
// second signal exits the process at once, with 130 (SIGINT) or 143 (SIGTERM). stop
// ends the handling, and does not block.
func Signals(ctx context.Context, stderr io.Writer) (_ context.Context, stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, done := handleSignals(ctx, stderr, sigs, os.Exit)
	return ctx, func() { signal.Stop(sigs); done() }
}

// handleSignals is Signals on a channel of signals, exiting with exit.
func handleSignals(ctx context.Context, stderr io.Writer, sigs <-chan os.Signal, exit func(int)) (context.Context, func()) {
	note := &interruptNote{text: "stopping"}
	ctx = context.WithValue(ctx, interruptNoteKey{}, note)
	ctx, cancel := context.WithCancelCause(ctx)
	quit := make(chan struct{})
	var once sync.Once
	go func() {
		for n := 0; ; n++ {
			var sig os.Signal
			select {
			case sig = <-sigs:
			case <-quit:
				return
			}
			code, cause := 130, ErrInterrupted
			if sig == syscall.SIGTERM {
				code, cause = 143, ErrTerminated
			}
			if n > 0 {
				fmt.Fprintf(stderr, "\nkiln: %s again: exiting at once\n", cause)
				exit(code)
				return
			}
			fmt.Fprintf(stderr, "\nkiln: %s: %s. Press Ctrl-C again to exit at once.\n", cause, note.get())
			cancel(cause)
		}
	}()
	return ctx, func() { once.Do(func() { close(quit); cancel(context.Canceled) }) }
}

// interruptNote says what the running verb does when interrupted.
type interruptNote struct {
	mu   sync.Mutex
	text string
}

type interruptNoteKey struct{}

func (n *interruptNote) get() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.text
}

// noteInterrupt sets what the first Ctrl-C will say the verb does from now on, e.g.
// "stopped following the rollout; it goes on in the daemon". It does nothing to a
// context Signals did not make.
func noteInterrupt(ctx context.Context, text string) {
	if n, ok := ctx.Value(interruptNoteKey{}).(*interruptNote); ok {
		n.mu.Lock()
		n.text = text
		n.mu.Unlock()
	}
}

// interrupted reports whether ctx ended because of Ctrl-C (SIGINT).
func interrupted(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrInterrupted) }

// Execute runs kiln with args and returns the process exit status.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(normalizeArgs(root, args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "kiln: interrupted")
		return 130
	default:
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Bake reproducible server images and keep fleets exactly what was built",
		Long: `kiln is an immutable-infrastructure engine: it bakes server images from a
declarative spec (kiln.hcl), reproducibly, and replaces servers instead of changing them.`,
		Example: `  kiln validate              check kiln.hcl and report every problem
  kiln bake                  bake every image in kiln.hcl into .kiln/
  kiln bake --load           ...and load them into the local Docker engine
  kiln -C examples/hello bake`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.chdir != "" {
				if err := os.Chdir(g.chdir); err != nil {
					return fmt.Errorf("-C %s: %w", g.chdir, err)
				}
			}
			return nil
		},
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVarP(&g.chdir, "chdir", "C", "", "run as if kiln was started in `DIR`")
	pf.StringVar(&g.file, "file", "", "the spec `FILE` (default: kiln.hcl, else kiln.hcl.json)")
	pf.StringVar(&g.stateDir, "state-dir", "", "kiln's state `DIR` (default: .kiln next to the spec)")
	pf.BoolVar(&g.noColor, "no-color", false, "do not color output")
	pf.BoolVar(&g.confine, "confine", false, "treat the spec as untrusted, as a pipeline treats a commit's: paths only inside its directory, Go builds sandboxed")
	root.AddCommand(
		newVersionCmd(g),
		newValidateCmd(g),
		newFmtCmd(g),
		newBakeCmd(g),
		newLockCmd(g),
		newImagesCmd(g),
		newSBOMCmd(g),
		newServeCmd(g),
		newDoorCmd(g),
		newUpCmd(g),
		newStopCmd(g),
		newPlanCmd(g),
		newApplyCmd(g),
		newStatusCmd(g),
		newHistoryCmd(g),
		newRollbackCmd(g),
		newDestroyCmd(g),
		newPauseCmd(g),
		newResumeCmd(g),
		newPromoteCmd(g),
		newAbortCmd(g),
		newEventsCmd(g),
		newLogsCmd(g),
		newPipelineCmd(g),
		newServiceCmd(g),
	)
	return root
}

// addVarFlag registers -var on the verbs that evaluate the spec.
func addVarFlag(g *globals, fs *pflag.FlagSet) {
	fs.StringArrayVar(&g.vars, "var", nil, "set a spec variable, as `NAME=VALUE` (repeatable; wins over KILN_VAR_NAME)")
}

// normalizeArgs lets Terraform habits work: -var, -json, -check and every other long
// flag may be written with one dash.
func normalizeArgs(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		visit := func(f *pflag.Flag) { long[f.Name] = true }
		c.Flags().VisitAll(visit)
		c.PersistentFlags().VisitAll(visit)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && long[name] {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// specPath is the spec file the verb works on.
func (g *globals) specPath() (string, error) {
	if g.file != "" {
		if _, err := os.Stat(g.file); err != nil {
			return "", fmt.Errorf("spec file: %w", err)
		}
		return g.file, nil
	}
	return spec.Find(".")
}

func (g *globals) varValues() (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range g.vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-var %q: write it as NAME=VALUE", kv)
		}
		vars[k] = v
	}
	return vars, nil
}

// loadSpec reads and checks the spec, printing every diagnostic. It fails if any is an
// error.
func (g *globals) loadSpec() (*spec.Config, error) { return g.readSpec(true) }

// loadSpecQuiet is loadSpec printing the diagnostics only when one is an error (a
// verb that reads the spec again later prints its warnings then).
func (g *globals) loadSpecQuiet() (*spec.Config, error) { return g.readSpec(false) }

func (g *globals) readSpec(warnings bool) (*spec.Config, error) {
	path, err := g.specPath()
	if err != nil {
		return nil, err
	}
	vars, err := g.varValues()
	if err != nil {
		return nil, err
	}
	cfg, diags := spec.Load(path, spec.Options{Vars: vars, Confine: g.confine})
	if diags.HasErrors() || warnings && len(diags) > 0 {
		g.printDiags(cfg.Files, diags)
	}
	if diags.HasErrors() {
		return nil, exitError{1}
	}
	return cfg, nil
}

func (g *globals) printDiags(files map[string]*hcl.File, diags hcl.Diagnostics) {
	width, color := uint(0), false
	if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = uint(w)
		}
		color = !g.noColor && os.Getenv("NO_COLOR") == ""
	}
	spec.WriteText(g.stderr, files, diags, width, color)
}

// state is the state directory for cfg: --state-dir, else .kiln beside the spec.
func (g *globals) state(cfg *spec.Config) (string, error) {
	dir := g.stateDir
	if dir == "" {
		specDir := "."
		if cfg != nil {
			specDir = cfg.Dir
		} else if p, err := g.specPath(); err == nil {
			specDir = filepath.Dir(p)
		}
		dir = filepath.Join(specDir, ".kiln")
	}
	if err := statedir.Prepare(dir); err != nil {
		return "", err
	}
	return dir, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// bakeOptions are the options of a bake of cfg: confined to the spec's directory with
// --confine.
func (g *globals) bakeOptions(cfg *spec.Config, src bake.SourceInfo, progress func(bake.Event)) bake.Options {
	opts := bake.Options{Source: src, Progress: progress}
	if g.confine {
		opts.Confine, opts.Root = true, cfg.Dir
	}
	return opts
}

func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
