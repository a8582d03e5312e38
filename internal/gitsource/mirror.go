package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// Mirror is a bare mirror, in a directory of its own, of one branch of a repository.
// Its methods may be called from several goroutines: one fetch or checkout runs at a
// time.
type Mirror struct {
	dir, repo, branch string
	mu                sync.Mutex
}

// Commit is a commit of the mirror.
type Commit struct {
	Hash    string    // full hex
	Subject string    // the first line of its message
	When    time.Time // the committer's time
}

// New returns the mirror of branch of repo (a URL or a local path) kept in dir. It does
// no I/O: the first Fetch clones.
func New(dir, repo, branch string) *Mirror {
	return &Mirror{dir: dir, repo: repo, branch: branch}
}

// BranchRef is the full name of a branch's ref, as a push notification names it
// ("refs/heads/main").
func BranchRef(branch string) string { return plumbing.NewBranchReferenceName(branch).String() }

// Fetch brings the mirror up to date with the branch of the repository (cloning it the
// first time) and returns commit rev: the branch's head when rev is "", else any
// revision git resolves (a full or short hash). It blocks on the network.
func (m *Mirror) Fetch(ctx context.Context, rev string) (Commit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	repo, err := m.update(ctx)
	if err != nil {
		return Commit{}, err
	}
	var hash plumbing.Hash
	if rev == "" {
		ref, err := repo.Reference(plumbing.NewBranchReferenceName(m.branch), true)
		if err != nil {
			return Commit{}, fmt.Errorf("branch %q of %s: %w", m.branch, m.repo, err)
		}
		hash = ref.Hash()
	} else {
		h, err := repo.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return Commit{}, fmt.Errorf("commit %q is not in %s: %w", rev, m.repo, err)
		}
		hash = *h
	}
	c, err := repo.CommitObject(hash)
	if err != nil {
		return Commit{}, err
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	return Commit{Hash: hash.String(), Subject: subject, When: c.Committer.When}, nil
}

// update opens the mirror, cloning it the first time, and fetches the branch. The
// caller holds m.mu.
func (m *Mirror) update(ctx context.Context) (*git.Repository, error) {
	branch := plumbing.NewBranchReferenceName(m.branch)
	repo, err := git.PlainOpen(m.dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainCloneContext(ctx, m.dir, true, &git.CloneOptions{URL: m.repo, ReferenceName: branch, SingleBranch: true})
		if err != nil {
			os.RemoveAll(m.dir)
			return nil, fmt.Errorf("cloning %s (branch %s): %w", m.repo, m.branch, err)
		}
		return repo, nil
	}
	if err != nil {
		return nil, err
	}
	spec := gitconfig.RefSpec(fmt.Sprintf("+%s:%s", branch, branch))
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: []gitconfig.RefSpec{spec}, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetching %s (branch %s): %w", m.repo, m.branch, err)
	}
	return repo, nil
}

// Checkout writes the tree of commit (a full hash the mirror holds) into dir, an empty
// directory: a clean checkout, with no .git directory, written through an os.Root of
// dir and refused, with ErrUnsafeTree, where git's fsck would refuse the tree (see
// writeTree).
func (m *Mirror) Checkout(commit, dir string) (Commit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	repo, err := git.PlainOpen(m.dir)
	if err != nil {
		return Commit{}, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return Commit{}, err
	}
	tree, err := c.Tree()
	if err != nil {
		return Commit{}, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Commit{}, err
	}
	defer root.Close()
	subject, _, _ := strings.Cut(c.Message, "\n")
	return Commit{Hash: c.Hash.String(), Subject: subject, When: c.Committer.When}, writeTree(root, tree)
}
