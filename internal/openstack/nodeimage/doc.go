// Package nodeimage makes one node image exist in one Glance project: ensure finds it (by ID, or
// by name and tags including hidden and community images), creates it, brings its bytes in by
// web-download or by a verified upload, detects failed and stuck imports and retries them a
// bounded number of times; delete removes it. The images come from the release, which parses
// its node-images.yaml at load (internal/release).
//
// The service keeps everything it must remember between reconciles in the object's status, so
// that an operator restart at any point adopts what an earlier run created.
package nodeimage
