package systemdunit

import (
	"fmt"
	"strings"
)

// ExecArgs writes a command line as ExecStart= reads it: each argument that is empty
// or holds a space, a quote, a backslash or a semicolon in double quotes, with `"`
// and `\` escaped; every "%" as "%%" (a specifier otherwise) and every "$" as "$$"
// (an environment variable otherwise). The first argument must be an absolute path.
func ExecArgs(args []string) (string, error) {
	if len(args) == 0 || !strings.HasPrefix(args[0], "/") {
		return "", fmt.Errorf("a command line starts with an absolute program path, not %q", strings.Join(args, " "))
	}
	out := make([]string, len(args))
	for i, a := range args {
		if err := oneLine(a); err != nil {
			return "", err
		}
		a = strings.NewReplacer("%", "%%", "$", "$$").Replace(a)
		if a == "" || strings.ContainsAny(a, " \t\"'\\;") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " "), nil
}

// Path writes an absolute path for a setting that takes one as it is, such as
// WorkingDirectory= or EnvironmentFile=: unquoted (spaces are part of it), "%" as "%%".
func Path(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	if err := unquoted(p); err != nil {
		return "", err
	}
	return strings.ReplaceAll(p, "%", "%%"), nil
}

// Env writes NAME=value assignments for Environment=, each in double quotes with `"`
// and `\` escaped and "%" as "%%".
func Env(assignments ...string) (string, error) {
	out := make([]string, len(assignments))
	for i, a := range assignments {
		name, _, ok := strings.Cut(a, "=")
		if !ok || name == "" || strings.ContainsAny(name, " \t\"'\\") {
			return "", fmt.Errorf("%q is not a NAME=value assignment", a)
		}
		if err := oneLine(a); err != nil {
			return "", err
		}
		out[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%").Replace(a) + `"`
	}
	return strings.Join(out, " "), nil
}

// Text writes free text, such as Description=: "%" as "%%".
func Text(s string) (string, error) {
	if err := unquoted(s); err != nil {
		return "", err
	}
	return strings.ReplaceAll(s, "%", "%%"), nil
}

// oneLine refuses a value a unit file cannot hold: a line break or a NUL.
func oneLine(s string) error {
	if strings.ContainsAny(s, "\n\r\x00") {
		return fmt.Errorf("%q has a line break or a NUL, which a unit file cannot hold", s)
	}
	return nil
}

// unquoted is oneLine for a value written as it is, which may also not end in a
// backslash: it would continue the line.
func unquoted(s string) error {
	if strings.HasSuffix(s, `\`) {
		return fmt.Errorf("%q ends in a backslash, which would continue its line in a unit file", s)
	}
	return oneLine(s)
}
