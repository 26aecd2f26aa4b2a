// Real-time ingest: read trades from the stream, write them to the trade table.
.qsp.run
  .qsp.read.fromStream[`trades]
  .qsp.write.toDatabase[`trade; .qsp.use `target`directWrite!(`$"trades";1b)]
