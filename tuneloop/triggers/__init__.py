"""What starts runs on Google Cloud without a person: a schedule for the export, a Cloud Function for uploads.

- :mod:`.schedule` — the export pipeline on a Vertex ``PipelineJobSchedule`` (cron with a time zone).
- :mod:`.gcs_upload` — a Cloud Function (CloudEvent) that submits ``tune-and-promote`` when a complete
  dataset lands under the dataset root, once per dataset however often the event fires.
- :mod:`.firestore_ingest` — a Cloud Function (CloudEvent) that streams each finished game from Firestore
  into the warehouse's game table, once per document, with a dead-letter table for documents that do not map.
"""
