// Package apply makes a cluster hold a set of rendered objects: server-side
// apply for what is missing or has drifted, nothing for what already matches
// (a steady-state pass writes nothing), and deletion of what an owner no
// longer renders.
package apply
