// Worker thread of the prepare pipeline: splits documents into sentences and tokenizes them.
import { parentPort, workerData } from 'worker_threads';
import { SentencePieceBackend, SentencePieceTokenizer } from '../tokenizer/sentencepiece';
import { createSentenceSplitter } from '../corpus/sentences';

export interface TokenizeRequest {
  id: number;
  /** documents, each a list of paragraphs */
  documents: string[][];
}

export interface TokenizeResult {
  id: number;
  tokens: Int32Array;
  /** tokens per sentence, sentences of all documents in order */
  sentenceLengths: Int32Array;
  /** sentences per document */
  documentSentences: Int32Array;
  error?: string;
}

export interface TokenizeWorkerData {
  modelPath: string;
  locale: string;
  /** forced SentencePiece backend (default: $CAMEMBERTA_SENTENCEPIECE, else native when built) */
  backend?: SentencePieceBackend;
}

async function main(): Promise<void> {
  const { modelPath, locale, backend } = workerData as TokenizeWorkerData;
  const tokenizer = await SentencePieceTokenizer.load(modelPath, { backend });
  const split = createSentenceSplitter(locale);
  parentPort!.on('message', (request: TokenizeRequest) => {
    try {
      const sentences: string[] = [];
      const documentSentences = new Int32Array(request.documents.length);
      request.documents.forEach((paragraphs, d) => {
        const before = sentences.length;
        for (const paragraph of paragraphs) for (const sentence of split(paragraph)) sentences.push(sentence);
        documentSentences[d] = sentences.length - before;
      });
      const { ids, lengths } = tokenizer.encodeMany(sentences);
      const result: TokenizeResult = { id: request.id, tokens: ids, sentenceLengths: lengths, documentSentences };
      parentPort!.postMessage(result, [ids.buffer as ArrayBuffer, lengths.buffer as ArrayBuffer, documentSentences.buffer as ArrayBuffer]);
    } catch (error) {
      parentPort!.postMessage({ id: request.id, error: (error as Error).message });
    }
  });
  parentPort!.postMessage({ ready: true, backend: tokenizer.backendDescription });
}

main().catch((error: Error) => parentPort!.postMessage({ fatal: error.message }));
