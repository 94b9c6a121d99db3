package render

// ValuesTemplateInProcess is ValuesTemplate without the rendering process: the fuzz target runs
// it many thousand times, and a process start per input would make fuzzing a hundred times slower.
var ValuesTemplateInProcess = valuesTemplate
