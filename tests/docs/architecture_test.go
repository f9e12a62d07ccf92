// Package docs_test checks that the repository's documents describe the tree
// as it is: every Go package under pkg/, internal/, cmd/ and tests/ has a row in
// ARCHITECTURE.md's package table.
package docs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is where go test runs this package from: tests/docs.
const repoRoot = "../.."

// packageRow matches a row of the package table: "| `name` |", where name is a
// directory or a directory followed by "/*" for all directories below it.
var packageRow = regexp.MustCompile("(?m)^\\| `([^`]+)`")

func TestArchitectureListsEveryPackage(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	table := packagesSection(t, string(doc))
	var listed []string
	for _, m := range packageRow.FindAllStringSubmatch(table, -1) {
		listed = append(listed, m[1])
	}
	for _, dir := range goPackageDirs(t, "pkg", "internal", "cmd", "tests") {
		if !covered(dir, listed) {
			t.Errorf("%s has Go files but no row in ARCHITECTURE.md's package table; add \"| `%s` | what it is |\" under \"## Packages\"", dir, dir)
		}
	}
	for _, name := range listed {
		base := strings.TrimSuffix(name, "/*")
		if _, err := os.Stat(filepath.Join(repoRoot, base)); err != nil {
			t.Errorf("ARCHITECTURE.md's package table lists %s, which does not exist; remove or rename its row", name)
		}
	}
}

// packagesSection returns the text of the "## Packages" section.
func packagesSection(t *testing.T, doc string) string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "\n## Packages\n")
	if !ok {
		t.Fatal(`ARCHITECTURE.md has no "## Packages" section`)
	}
	if end := strings.Index(after, "\n## "); end >= 0 {
		after = after[:end]
	}
	return after
}

// goPackageDirs lists the directories under roots that hold .go files,
// skipping testdata.
func goPackageDirs(t *testing.T, roots ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	var dirs []string
	for _, root := range roots {
		err := filepath.WalkDir(filepath.Join(repoRoot, root), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") {
				return nil
			}
			rel, err := filepath.Rel(repoRoot, filepath.Dir(path))
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if !seen[rel] {
				seen[rel] = true
				dirs = append(dirs, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// covered reports whether dir is a row of the table, or lies under a row
// written as "dir/*".
func covered(dir string, listed []string) bool {
	for _, name := range listed {
		if name == dir {
			return true
		}
		if base, ok := strings.CutSuffix(name, "/*"); ok && strings.HasPrefix(dir, base+"/") {
			return true
		}
	}
	return false
}
