@replicas2 @workers2
Feature: GraphRAG
  A corpus is a graph Torua keeps in the schema of BRIEF section 10 (Document,
  Chunk, Entity, Community; HAS_CHUNK, MENTIONS, RELATED, IN_COMMUNITY), run for real on a cluster of its
  own: `torua up --replicas 2 --workers 2` starts a nats-server, a coordinator,
  nodes n1, n2 and n3 with two copies of each shard, a gateway and two GraphRAG
  workers. Documents sent to a corpus are queued on JetStream; a worker chunks,
  embeds and extracts each one and writes it into the corpus graph, where every
  entity and relation keeps the chunks that support it. Each scenario uses a
  corpus of its own.

  Background:
    Given a running Torua cluster
    And the cluster keeps 2 copies of each shard

  Scenario: Documents are ingested by the workers and answer questions
    Given the corpus "people" with chunks of 40 tokens
    When I send these documents to "people"
      """
      [{"id": "lovelace", "text": "Ada Lovelace was born in London. Ada Lovelace worked with Charles Babbage."},
       {"id": "curie", "text": "Marie Curie was born in Warsaw. Pierre Curie married Marie Curie in Paris."},
       {"id": "turing", "text": "Alan Turing was born in London. Alan Turing worked at Bletchley Park."}]
      """
    Then the job ends with 3 documents done and 0 failed
    When the corpus "people" is asked "Where was Alan Turing born?" in mode "naive"
    Then the first chunk is from "turing" and says "born in London"
    When the corpus "people" is asked "Who married Marie Curie?" in mode "local"
    Then the first chunk is from "curie" and says "married"
    When the corpus "people" is asked "Where was the person who worked with Charles Babbage born?" in mode "hybrid"
    Then the first chunk is from "lovelace" and says "born in London"
    And the entity "e/person/ada lovelace" of "people" is there

  Scenario: Communities group the entities, and a global query reads their summaries
    Given the corpus "topics" with chunks of 40 tokens
    When I send these documents to "topics"
      """
      [{"id": "curie", "text": "Marie Curie was born in Warsaw. Pierre Curie married Marie Curie in Paris. Marie Curie won the Nobel Prize."},
       {"id": "turing", "text": "Alan Turing was born in London. Alan Turing worked at Bletchley Park with Joan Clarke."}]
      """
    Then the job ends with 2 documents done and 0 failed
    When the corpus "topics" is asked "Who won the Nobel Prize?" in mode "global"
    Then the answer is 409 with error code "conflict"
    When I ask for the communities of "topics"
    Then the job ends with 1 documents done and 0 failed
    And "e/person/marie curie" and "e/person/pierre curie" of "topics" are in one community
    And "e/person/marie curie" and "e/person/alan turing" of "topics" are in different communities
    When the corpus "topics" is asked "Marie Curie and the Nobel Prize in Paris" in mode "global"
    Then the first chunk is from "curie" and says "Marie Curie"
    And the first community's summary names "Marie Curie"

  Scenario: Creating a corpus again with other settings is a conflict
    Given the corpus "settled" with chunks of 40 tokens
    When I PUT "/rag/settled" with
      """
      {"chunk_tokens": 100}
      """
    Then the answer is 409 with error code "conflict"

  Scenario: Deleting a document removes its share of every entity and relation
    Given the corpus "shared" with chunks of 40 tokens
    When I send these documents to "shared"
      """
      [{"id": "a", "text": "Ada Lovelace worked with Charles Babbage in London."},
       {"id": "b", "text": "Charles Babbage lived in London. Charles Babbage met Ada Lovelace."}]
      """
    Then the job ends with 2 documents done and 0 failed
    And "e/person/ada lovelace" of "shared" is related to "e/person/charles babbage" by 2 chunks
    When I DELETE "/rag/shared/documents/b"
    Then the answer is 204
    And "e/person/ada lovelace" of "shared" is related to "e/person/charles babbage" by 1 chunk
    And the entity "e/place/london" of "shared" is there
    When I DELETE "/rag/shared/documents/a"
    Then the entity "e/person/ada lovelace" of "shared" is gone
    And the entity "e/place/london" of "shared" is gone

  Scenario: A bad document or question is refused and nothing is queued
    Given the corpus "strict" with chunks of 40 tokens
    When I POST "/rag/strict/documents" with
      """
      {"id": "x", "text": ""}
      """
    Then the answer is 400 with error code "bad_request"
    And the error message names "text must be non-empty"
    And the entity "d/x" of "strict" is gone
    When I POST "/rag/strict/query" with
      """
      {"question": "anything", "mode": "cosmic"}
      """
    Then the answer is 400 with error code "bad_request"
