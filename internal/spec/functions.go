package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions returns the functions a spec may call. Paths given to the file functions
// resolve against dir, the spec's directory, so a spec means the same thing wherever
// kiln is run from.
func functions(dir string) map[string]function.Function {
	return specFunctions(hostFiles{dir})
}

// specFunctions returns the functions a spec may call, with file() and fileexists()
// reading from files. Every function's result is bounded (see limited).
func specFunctions(files specFiles) map[string]function.Function {
	fns := map[string]function.Function{
		"file":       fileFunc(files),
		"fileexists": fileExistsFunc(files),
		"abs":        stdlib.AbsoluteFunc,
		"coalesce":   stdlib.CoalesceFunc,
		"concat":     stdlib.ConcatFunc,
		"contains":   stdlib.ContainsFunc,
		"format":     stdlib.FormatFunc,
		"join":       stdlib.JoinFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		"jsondecode": jsonDecodeFunc,
		"keys":       stdlib.KeysFunc,
		"length":     stdlib.LengthFunc,
		"lower":      stdlib.LowerFunc,
		"max":        stdlib.MaxFunc,
		"merge":      stdlib.MergeFunc,
		"min":        stdlib.MinFunc,
		"regex":      stdlib.RegexFunc,
		"replace":    stdlib.ReplaceFunc,
		"split":      stdlib.SplitFunc,
		"substr":     stdlib.SubstrFunc,
		"title":      stdlib.TitleFunc,
		"tostring":   stdlib.MakeToFunc(cty.String),
		"tonumber":   stdlib.MakeToFunc(cty.Number),
		"trimspace":  stdlib.TrimSpaceFunc,
		"trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc,
		"upper":      stdlib.UpperFunc,
		"values":     stdlib.ValuesFunc,
	}
	for name, f := range fns {
		fns[name] = limited(f)
	}
	return fns
}

// specFiles is where file() and fileexists() find the files a spec names.
type specFiles interface {
	// open opens name for reading. It does not block on a FIFO waiting for a writer.
	open(name string) (*os.File, error)
	stat(name string) (fs.FileInfo, error)
	// path is where name is, for errors.
	path(name string) string
}

// hostFiles finds files anywhere: relative names resolve against dir.
type hostFiles struct{ dir string }

func (h hostFiles) open(name string) (*os.File, error) {
	return os.OpenFile(resolve(h.dir, name), openFlags, 0)
}
func (h hostFiles) stat(name string) (fs.FileInfo, error) { return os.Stat(resolve(h.dir, name)) }
func (h hostFiles) path(name string) string               { return resolve(h.dir, name) }

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func fileFunc(files specFiles) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			b, err := readFile(files, p)
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

// readFile reads the regular file p, of at most MaxFileBytes.
func readFile(files specFiles, p string) ([]byte, error) {
	f, err := files.open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no file at %s", files.path(p))
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file: file() reads only regular files", p, describeMode(fi.Mode()))
	}
	tooBig := fmt.Errorf("%s is larger than %d bytes (1 MiB), the most file() reads", p, MaxFileBytes)
	if fi.Size() > MaxFileBytes {
		return nil, tooBig
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", p, err)
	case len(b) > MaxFileBytes: // it grew since the Stat
		return nil, tooBig
	}
	return b, nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

func fileExistsFunc(files specFiles) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			fi, err := files.stat(args[0].AsString())
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return cty.False, nil
			case err != nil:
				return cty.NilVal, fmt.Errorf("checking %s: %w", args[0].AsString(), err)
			}
			return cty.BoolVal(fi.Mode().IsRegular()), nil
		},
	})
}

// jsonDecodeFunc is jsondecode refusing input nested deeper than MaxNestingDepth, which
// the JSON decoder would follow recursively.
var jsonDecodeFunc = function.New(&function.Spec{
	Params: stdlib.JSONDecodeFunc.Params(),
	Type: func(args []cty.Value) (cty.Type, error) {
		if args[0].IsKnown() && !args[0].IsNull() {
			if err := checkJSONDepth(args[0].AsString()); err != nil {
				return cty.NilType, function.NewArgError(0, err)
			}
		}
		return stdlib.JSONDecodeFunc.ReturnTypeForValues(args)
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) { return stdlib.JSONDecodeFunc.Call(args) },
})

func checkJSONDepth(s string) error {
	depth, inString := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			if depth++; depth > MaxNestingDepth {
				return fmt.Errorf("the JSON nests more than %d levels deep", MaxNestingDepth)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// limited wraps f so that a result longer than MaxFileBytes (a string) or
// MaxCollectionLength (a collection) is an error rather than a value.
//
// A function called on a secret or a sensitive value that fails says so without the
// value: many quote their argument in their errors ("cannot convert \"hunter2\" to
// number"), and errors are shown in plans, events and run logs.
func limited(f function.Function) function.Function {
	params := f.Params()
	for i := range params {
		params[i].AllowMarked = true
	}
	var varParam *function.Parameter
	if vp := f.VarParam(); vp != nil {
		p := *vp
		p.AllowMarked = true
		varParam = &p
	}
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      params,
		VarParam:    varParam,
		Type: func(args []cty.Value) (cty.Type, error) {
			plain, marks := unmarkAll(args)
			ty, err := f.ReturnTypeForValues(plain)
			if err != nil && len(marks) > 0 {
				return cty.NilType, errHidden
			}
			return ty, err
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			plain, marks := unmarkAll(args)
			v, err := f.Call(plain)
			if err != nil {
				if len(marks) > 0 {
					return cty.NilVal, errHidden
				}
				return v, err
			}
			if err := checkResult(v); err != nil {
				return cty.NilVal, err
			}
			return v.WithMarks(marks...), nil
		},
	})
}

var errHidden = errors.New("the function cannot take this value (it holds a secret or a sensitive variable, so it is not shown)")

// unmarkAll returns args without their marks, and the marks they had.
func unmarkAll(args []cty.Value) ([]cty.Value, []cty.ValueMarks) {
	out := make([]cty.Value, len(args))
	var marks []cty.ValueMarks
	for i, a := range args {
		v, m := a.UnmarkDeep()
		out[i] = v
		if len(m) > 0 {
			marks = append(marks, m)
		}
	}
	return out, marks
}

func checkResult(v cty.Value) error {
	v, _ = v.UnmarkDeep()
	if !v.IsKnown() || v.IsNull() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		if n := len(v.AsString()); n > MaxFileBytes {
			return fmt.Errorf("the result would be a string of %d bytes, more than the %d (1 MiB) a function may return", n, MaxFileBytes)
		}
	case ty.IsCollectionType() || ty.IsTupleType() || ty.IsObjectType():
		var n int
		if ty.IsObjectType() {
			n = len(ty.AttributeTypes())
		} else {
			n = v.LengthInt()
		}
		if n > MaxCollectionLength {
			return fmt.Errorf("the result would have %d elements, more than the %d a function may return", n, MaxCollectionLength)
		}
	}
	return nil
}
