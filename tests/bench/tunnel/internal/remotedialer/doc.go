// Package remotedialer is a copy of github.com/rancher/remotedialer
// v0.6.2 (Apache-2.0, see LICENSE) for the tunnel bench's side-by-side
// comparison. It is vendored because its go.mod asks for Go 1.27.3 while
// this module builds with 1.26; the only edits are the import path of its
// metrics package, pkg/errors.Wrapf replaced by fmt.Errorf and
// io/ioutil by io (for this repository's linters).
package remotedialer
