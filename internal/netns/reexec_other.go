//go:build !linux

package netns

import (
	"errors"
	"syscall"
)

// namespaceAttr fails: network namespaces exist only on Linux.
func namespaceAttr() (*syscall.SysProcAttr, error) {
	return nil, errors.New("network namespaces need Linux")
}
