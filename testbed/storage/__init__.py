"""Central object storage read from other sites: origin server, regional cache, readers."""
