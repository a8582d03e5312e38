package gitsource

import (
	"context"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// Watch watches a local repository for a change of branch (a commit, a reset, a fetch
// into it): the returned channel receives when the branch's ref or the packed refs
// change. It returns nil when repo is a URL or cannot be watched; a caller that polls
// too only waits a poll for a missed notification. It does not block: the watch runs
// in a goroutine of its own until ctx ends.
func Watch(ctx context.Context, repo, branch string) <-chan struct{} {
	if !filepath.IsAbs(repo) {
		return nil // a URL
	}
	gitDir := filepath.Join(repo, ".git")
	if fi, err := os.Stat(gitDir); err != nil || !fi.IsDir() {
		if _, err := os.Stat(filepath.Join(repo, "refs")); err != nil {
			return nil // a worktree with a .git file, or not a repository: poll only
		}
		gitDir = repo // a bare repository
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil
	}
	ref := filepath.Join(gitDir, "refs", "heads", filepath.FromSlash(branch))
	if err := w.Add(gitDir); err != nil {
		w.Close()
		return nil
	}
	w.Add(filepath.Dir(ref)) // absent until the branch has a loose ref: packed-refs tells then
	out := make(chan struct{}, 1)
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Git writes a ref to NAME.lock and renames it: the rename is the change.
				if ev.Name == ref || filepath.Base(ev.Name) == "packed-refs" {
					select {
					case out <- struct{}{}:
					default:
					}
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return out
}
