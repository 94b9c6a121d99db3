// Package capability checks whether a cloud can serve the Clusters of a release's ClusterClass
// as the class defaults them: the load-balancer service when the class enables the API server
// load balancer, the flavors its variables and machine templates default to, the external
// network, the disk formats and import methods of its images, and quota headroom for one
// control-plane and one worker machine.
//
// NeedsOf reads what the class needs from the objects the release renders (and its
// node-images.yaml); Read asks the cloud, with read-only calls only; Check, a pure function,
// turns both into findings that say exactly what is missing.
package capability
