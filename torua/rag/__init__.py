"""GraphRAG on the cluster (BRIEF section 10, docs/design/graphrag.md): the pipeline
that turns documents into chunks, embeddings, entities and relations."""
