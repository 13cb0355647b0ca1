"""The edges: Kafka, codecs, sinks, settings and the command line."""
