"""Development infrastructure: the local Kafka broker assembled from Maven Central."""
