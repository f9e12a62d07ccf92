// Command hello prints pkg/version's build identity: a small program the
// image builder's unit test puts into an image instead of all of meshfleet.
package main

import (
	"fmt"

	"github.com/meshfleet/meshfleet/pkg/version"
)

func main() { fmt.Println(version.String()) }
