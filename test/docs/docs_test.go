// Package docs_test keeps the hand-written documentation in docs/ current with the code: every
// condition reason the operator sets is in the troubleshooting table of docs/operations.md (and
// the table lists no reason the code lacks), and the relative links of the documents resolve.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// reasonSources are the directories whose Go files declare condition reasons: the API's
// documented reasons and the controllers' own.
var reasonSources = []string{"api", "controllers", "internal"}

// TestOperationsListsEveryConditionReason compares the reasons declared in the code (string
// constants named *Reason) with the first column of the troubleshooting table.
func TestOperationsListsEveryConditionReason(t *testing.T) {
	root := testenv.RepoRoot()
	inCode := map[string]string{} // reason -> where it is declared
	for _, dir := range reasonSources {
		for reason, where := range declaredReasons(t, filepath.Join(root, dir)) {
			inCode[reason] = where
		}
	}
	if len(inCode) < 20 {
		t.Fatalf("found only %d reasons in the code: the scan is broken", len(inCode))
	}
	inDoc := documentedReasons(t, filepath.Join(root, "docs", "operations.md"))

	for _, reason := range slices.Sorted(maps.Keys(inCode)) {
		if !inDoc[reason] {
			t.Errorf("reason %q (%s) is not in the troubleshooting table of docs/operations.md", reason, inCode[reason])
		}
	}
	for _, reason := range slices.Sorted(maps.Keys(inDoc)) {
		if _, ok := inCode[reason]; !ok {
			t.Errorf("docs/operations.md lists reason %q, which the code does not declare", reason)
		}
	}
}

// declaredReasons returns the values of the string constants named *Reason in the non-test Go
// files below dir.
func declaredReasons(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasSuffix(n.Name, "Reason") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						return err
					}
					rel, _ := filepath.Rel(filepath.Dir(dir), path)
					out[v] = rel + ": " + n.Name
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tableRow matches a row of the troubleshooting table and captures its reason.
var tableRow = regexp.MustCompile("^\\| `([A-Za-z]+)` \\|")

// documentedReasons returns the reasons in the first column of the table under the
// "Troubleshooting by condition reason" heading.
func documentedReasons(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Troubleshooting by condition reason\n")
	if !ok {
		t.Fatalf("%s has no section \"Troubleshooting by condition reason\"", path)
	}
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next]
	}
	out := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if m := tableRow.FindStringSubmatch(line); m != nil {
			if out[m[1]] {
				t.Errorf("docs/operations.md lists reason %q twice", m[1])
			}
			out[m[1]] = true
		}
	}
	return out
}

// link matches a Markdown link target that is a relative path (no scheme, no anchor only).
var link = regexp.MustCompile(`\]\(([^)#:\s]+)(#[^)]*)?\)`)

// TestDocumentLinksResolve checks the relative links of README.md and docs/*.md.
func TestDocumentLinksResolve(t *testing.T) {
	root := testenv.RepoRoot()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := filepath.Join(filepath.Dir(f), filepath.FromSlash(m[1]))
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s links to %s, which does not exist", filepath.Base(f), m[1])
			}
		}
	}
}
