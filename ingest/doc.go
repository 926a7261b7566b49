// Package ingest moves failure events in and out of Kafka with segmentio/kafka-go: a
// consumer-group reader that hands batches to a Handler and commits offsets only after
// the Handler has made them durable, a producer for the failures topic, the dead-letter
// topic for messages that cannot be processed, and an embedded Kafka-protocol broker
// (twmb/franz-go's kfake, over TCP on loopback) for the default single-machine run and
// the tests.
//
// Delivery is at least once: a crash or a rebalance can hand a message out again, so
// the Handler must recognise what it has already recorded (the ledger dedupes on the
// event id). ingest does not decode events and does not decide anything.
package ingest
