package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writerEnv names the database TestHelperWriter writes to; only its parent sets it.
const writerEnv = "KILN_STORE_KILL_WRITER_DB"

// TestHelperWriter is the child of TestKillDuringCommit, not a test: it opens the
// store as the daemon would and writes through its API until it is killed, printing
// one acknowledgement line after each call returns nil.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(writerEnv)
	if path == "" {
		t.Skip("the child process of TestKillDuringCommit")
	}
	err := writeUntilKilled(context.Background(), path, os.Stdout)
	fmt.Fprintln(os.Stderr, "writer:", err)
	os.Exit(3)
}

// writeUntilKilled writes a rollout's worth of records in a loop. Each acknowledgement
// is one write(2) of one line to the pipe, so it is whole or absent. It returns only
// on an error.
func writeUntilKilled(ctx context.Context, path string, ack io.Writer) error {
	s, err := Open(ctx, path)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) error {
		_, err := fmt.Fprintf(ack, format+"\n", args...)
		return err
	}
	// A kill between StartRollout and FinishRollout leaves a running rollout; the
	// daemon ends those when it starts, and so does this writer.
	running, err := s.RunningRollouts(ctx)
	if err != nil {
		return err
	}
	for _, r := range running {
		if err := s.FinishRollout(ctx, r.ID, RolloutFailed, "interrupted by a kill"); err != nil {
			return err
		}
	}
	for {
		rev, err := s.CreateRevision(ctx, Revision{Service: "web", Image: fmt.Sprintf("sha256:%016x", rand.Uint64()), ImageName: "web", Spec: "{}", AppliedBy: "kill test"})
		if err != nil {
			return err
		}
		if err := say("revision %d", rev.Number); err != nil {
			return err
		}
		ro, err := s.StartRollout(ctx, Rollout{Service: "web", From: rev.Number - 1, To: rev.Number, Strategy: "rolling", Owner: fmt.Sprintf("pid %d", os.Getpid())})
		if err != nil {
			return err
		}
		if err := say("rollout %d %d", ro.ID, rev.Number); err != nil {
			return err
		}
		msg := fmt.Sprintf("wave 1 of revision %d is healthy", rev.Number)
		ev, err := s.AddEvent(ctx, Event{Kind: "service", Service: "web", RolloutID: ro.ID, Step: "wave 1", Tone: "good", Type: "wave_healthy", Message: msg})
		if err != nil {
			return err
		}
		if err := say("event %d %d %s", ev.ID, ro.ID, msg); err != nil {
			return err
		}
		if err := s.FinishRollout(ctx, ro.ID, RolloutSucceeded, ""); err != nil {
			return err
		}
		if err := say("finished %d", ro.ID); err != nil {
			return err
		}
		if err := s.SetOutcome(ctx, "web", rev.Number, OutcomeDeployed, "deployed by the kill test"); err != nil {
			return err
		}
		if err := say("outcome %d", rev.Number); err != nil {
			return err
		}
		if err := s.SetCurrent(ctx, "web", rev.Number); err != nil {
			return err
		}
		if err := say("current %d", rev.Number); err != nil {
			return err
		}
		commit := fmt.Sprintf("%016x", rand.Uint64())
		run, err := s.QueueRun(ctx, "main", commit, "a commit", "poll")
		if err != nil {
			return err
		}
		if err := say("run %d %s", run.ID, commit); err != nil {
			return err
		}
	}
}

// acked is every write a writer acknowledged, across all the kills.
type acked struct {
	writes    int
	revisions map[int64]bool
	outcomes  map[int64]bool
	rollouts  map[int64]int64 // id → to revision
	finished  map[int64]bool
	events    map[int64]string // id → "rollout message"
	runs      map[int64]string // id → commit
	current   int64
	// unacked counts the records in the store that no acknowledgement named: a kill
	// landed after the commit's WAL write (durable against a kill) but before the ack.
	unacked int
}

func (a *acked) record(line string) error {
	f := strings.SplitN(line, " ", 4)
	num := func(i int) int64 {
		if i >= len(f) {
			return -1
		}
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	switch {
	case f[0] == "revision" && num(1) > 0:
		a.revisions[num(1)] = true
	case f[0] == "rollout" && num(2) > 0:
		a.rollouts[num(1)] = num(2)
	case f[0] == "event" && len(f) == 4:
		a.events[num(1)] = f[2] + " " + f[3]
	case f[0] == "finished" && num(1) > 0:
		a.finished[num(1)] = true
	case f[0] == "outcome" && num(1) > 0:
		a.outcomes[num(1)] = true
	case f[0] == "current" && num(1) > 0:
		a.current = max(a.current, num(1))
	case f[0] == "run" && len(f) == 3:
		a.runs[num(1)] = f[2]
	default:
		return fmt.Errorf("unexpected line %q", line)
	}
	a.writes++
	return nil
}

// check opens the store as the daemon would and checks its integrity and that every
// acknowledged write is in it.
func (a *acked) check(ctx context.Context, path string) error {
	s, err := Open(ctx, path)
	if err != nil {
		return fmt.Errorf("reopening: %w", err)
	}
	defer s.Close()
	var integrity string
	if err := s.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		return fmt.Errorf("integrity_check: %q, %v", integrity, err)
	}
	revs, err := s.Revisions(ctx, "web")
	if err != nil {
		return err
	}
	byNumber := map[int64]Revision{}
	for _, r := range revs {
		byNumber[r.Number] = r
	}
	for n := range a.revisions {
		if _, ok := byNumber[n]; !ok {
			return fmt.Errorf("acknowledged revision %d is missing", n)
		}
	}
	for n := range a.outcomes {
		if r := byNumber[n]; r.Outcome != OutcomeDeployed {
			return fmt.Errorf("revision %d's acknowledged outcome reads %q", n, r.Outcome)
		}
	}
	ros, err := s.Rollouts(ctx, "web")
	if err != nil {
		return err
	}
	byID := map[int64]Rollout{}
	for _, r := range ros {
		byID[r.ID] = r
	}
	for id, to := range a.rollouts {
		if r, ok := byID[id]; !ok || r.To != to {
			return fmt.Errorf("acknowledged rollout %d to revision %d reads %+v", id, to, r)
		}
	}
	for id := range a.finished {
		if r := byID[id]; r.State != RolloutSucceeded || r.Finished.IsZero() {
			return fmt.Errorf("acknowledged finish of rollout %d reads %+v", id, r)
		}
	}
	evs, err := s.Events(ctx, "web", 0, 1<<30)
	if err != nil {
		return err
	}
	byEvent := map[int64]Event{}
	for _, e := range evs {
		byEvent[e.ID] = e
	}
	for id, want := range a.events {
		e := byEvent[id]
		if got := fmt.Sprintf("%d %s", e.RolloutID, e.Message); got != want || e.Kind != "service" || e.Step != "wave 1" || e.Tone != "good" {
			return fmt.Errorf("acknowledged event %d (%s) reads %+v", id, want, e)
		}
	}
	if sv, err := s.Service(ctx, "web"); a.current > 0 && (err != nil || sv.Current < a.current) {
		return fmt.Errorf("acknowledged current revision %d reads %+v, %v", a.current, sv, err)
	}
	runs, err := s.Runs(ctx, "main", 1<<30)
	if err != nil {
		return err
	}
	byRun := map[int64]string{}
	for _, r := range runs {
		byRun[r.ID] = r.Commit
	}
	for id, commit := range a.runs {
		if byRun[id] != commit {
			return fmt.Errorf("acknowledged run %d of %s reads %q", id, commit, byRun[id])
		}
	}
	a.unacked = len(byNumber) - len(a.revisions) + len(byID) - len(a.rollouts) + len(byEvent) - len(a.events) + len(byRun) - len(a.runs)
	return s.Close()
}

// TestKillDuringCommit kills a writer with SIGKILL at a random moment, over and over
// on the same file, and after each kill opens the store as the daemon would: it must
// open, pass integrity_check and hold every write the writer acknowledged.
func TestKillDuringCommit(t *testing.T) {
	kills := 200
	if raceEnabled {
		kills = 50
	}
	if testing.Short() {
		kills = 20
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	a := &acked{revisions: map[int64]bool{}, outcomes: map[int64]bool{}, rollouts: map[int64]int64{}, finished: map[int64]bool{},
		events: map[int64]string{}, runs: map[int64]string{}}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, seed))
	start := time.Now()
	duringOpen, withWAL := 0, 0 // withWAL: reopens that found a WAL to replay (checked read-only)
	for i := range kills {
		// Acknowledgements to wait for before the kill: 0 kills during Open (and, the
		// first time, during the migrations); the writer keeps writing while the
		// parent reads, so the kill lands anywhere in a call.
		wait := rnd.IntN(30)
		if wait == 0 {
			duringOpen++
		}
		// Killed at once, the writer would always be at the start of its next call;
		// the delay spreads the kill over a call (one commit takes about 4 ms, most of
		// it the fsync). It chooses the moment; nothing waits on it.
		delay := time.Duration(rnd.Int64N(int64(5 * time.Millisecond)))
		if err := killOnce(path, wait, delay, a); err != nil {
			t.Fatalf("kill %d (after %d acknowledgements): %v", i+1, wait, err)
		}
		if hasWAL(path) {
			withWAL++
		}
		if err := a.check(ctx, path); err != nil {
			t.Fatalf("after kill %d: %v", i+1, err)
		}
	}
	t.Logf("%d kills (%d before the first acknowledgement), %d acknowledged writes (%d revisions, %d events, %d rollouts, %d runs) all present, "+
		"%d records committed but never acknowledged (killed between commit and ack), %d reopens with a WAL to replay, integrity_check ok after every kill, %v",
		kills, duringOpen, a.writes, len(a.revisions), len(a.events), len(a.rollouts), len(a.runs), a.unacked, withWAL, time.Since(start).Round(time.Millisecond))
}

// killOnce starts a writer on path, reads wait acknowledgements, kills it with
// SIGKILL delay later and records every acknowledgement it printed, those after the kill was sent
// included.
func killOnce(path string, wait int, delay time.Duration, a *acked) error {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	r := bufio.NewReader(out)
	readLine := func() (bool, error) {
		line, err := r.ReadString('\n')
		if err != nil {
			return false, nil // EOF; a line without its newline was not acknowledged
		}
		return true, a.record(strings.TrimSuffix(line, "\n"))
	}
	for range wait {
		ok, err := readLine()
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
		if !ok {
			cmd.Wait()
			return fmt.Errorf("the writer stopped by itself: %s", stderr.String())
		}
	}
	kill := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer kill.Stop()
	for {
		ok, err := readLine()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("writer: %v, want killed", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("writer ended with %v, not by the kill: %s", err, stderr.String())
	}
	return nil
}
