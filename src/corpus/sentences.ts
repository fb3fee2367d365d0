// Sentence splitting with ICU's sentence-break rules (Intl.Segmenter, built into Node with full ICU).
// NVIDIA's ELECTRA recipe only needs sentence boundaries to choose where segment A ends; ICU's rules
// are a maintained, language-aware choice that runs inside the tokenizer workers.
export function createSentenceSplitter(locale = 'fr'): (paragraph: string) => string[] {
  const segmenter = new Intl.Segmenter(locale, { granularity: 'sentence' });
  return (paragraph: string): string[] => {
    const sentences: string[] = [];
    for (const { segment } of segmenter.segment(paragraph)) {
      const sentence = segment.trim();
      if (sentence) sentences.push(sentence);
    }
    return sentences;
  };
}
