"""Extractors for the formats read by the document worker (`ingest.parsers.doc_worker`): DOCX, XLSX,
CSV, PPTX, EPUB, EML and MSG. They run only inside that sandboxed child, one module per format, each
turning a file into `common.Out` blocks (kind, text, section path, page)."""
