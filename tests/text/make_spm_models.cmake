# The tokenizer tests' fixture (ctest text.spm_models, FIXTURES_SETUP text_spm_models): trains small
# SentencePiece models with Debian's spm_train on a generated caption corpus, and writes reference
# ids of sample lines with spm_encode, so that tests/text/test_tokenizer.cpp checks the tokenizer
# against the SentencePiece executables. No model file is committed.
#
#   cmake -DSPM_TRAIN=... -DSPM_ENCODE=... -DOUT_DIR=... -P make_spm_models.cmake
#
# Models written to OUT_DIR:
#   t5like.model    unigram (as T5's spiece.model), pad 0, eos 1, unk 2, no bos
#   other_ids.model bpe, eos 0, unk 3, pad 5, no bos: the tokenizer must read the ids, not assume
#   no_pad.model    unigram without a pad piece: the tokenizer must refuse it
# and samples.txt (one sample per line) with samples.<model>.ids (spm_encode --output_format=id).
if(NOT OUT_DIR)
  message(FATAL_ERROR "make_spm_models.cmake: OUT_DIR is not set")
endif()
foreach(tool SPM_TRAIN SPM_ENCODE)
  if(NOT ${tool} OR NOT EXISTS "${${tool}}")
    message(FATAL_ERROR "make_spm_models.cmake: ${tool} '${${tool}}' not found: install Debian's "
                        "sentencepiece package (tools/setup.sh)")
  endif()
endforeach()
file(MAKE_DIRECTORY "${OUT_DIR}")

# Captions of shapes like MENTOR's training prompts ("The {obj} in ...", "A cat in ...").
set(sizes small large tiny huge)
set(colors red green blue yellow purple orange white black pink golden)
set(shapes star circle square triangle heart cross moon arrow)
set(positions "at the top left" "at the top right" "at the bottom left" "at the bottom right"
  "in the center" "near the edge")
set(backgrounds "on a blue background" "on a white background" "on a dark background"
  "on a striped background" "in a 16-bit fantasy pixel-art scene" "in a forest")
set(corpus "")
set(i 0)
foreach(color IN LISTS colors)
  foreach(shape IN LISTS shapes)
    foreach(position IN LISTS positions)
      math(EXPR s "${i} % 4")
      math(EXPR b "${i} % 6")
      math(EXPR i "${i} + 1")
      list(GET sizes ${s} size)
      list(GET backgrounds ${b} background)
      string(APPEND corpus "a ${size} ${color} ${shape} ${position} ${background}.\n"
        "The ${shape} in the image is ${color}, ${size} and ${position}.\n"
        "A ${color} cat in ${background}, drawn as a ${shape}.\n")
    endforeach()
  endforeach()
endforeach()
file(WRITE "${OUT_DIR}/corpus.txt" "${corpus}")

function(train name)
  execute_process(
    COMMAND "${SPM_TRAIN}" --input=${OUT_DIR}/corpus.txt --model_prefix=${OUT_DIR}/${name}
            --vocab_size=200 --hard_vocab_limit=false --character_coverage=1.0 --num_threads=1
            ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "make_spm_models.cmake: spm_train for ${name} failed (${rc}):\n${err}")
  endif()
endfunction()
train(t5like --model_type=unigram --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1)
train(other_ids --model_type=bpe --eos_id=0 --unk_id=3 --pad_id=5 --bos_id=-1)
train(no_pad --model_type=unigram --pad_id=-1 --eos_id=1 --unk_id=0 --bos_id=-1)

# Samples: corpus-like captions, whitespace the normalizer collapses, a tab, capitals, characters
# outside the corpus (unk), MENTOR's demo prompt's text.
set(samples
  "a small red star at the top left on a blue background."
  "The heart in the image is golden, huge and in the center."
  "  a   large    blue   moon   near the edge  "
  "a\tpink arrow, drawn as a cross"
  "A CAT IN A FOREST"
  "a red star ünïcode 猫 € 42"
  "A cat in a 16-bit fantasy pixel-art scene")
string(REPLACE ";" "\n" sample_text "${samples}")
file(WRITE "${OUT_DIR}/samples.txt" "${sample_text}\n")
foreach(name t5like other_ids)
  execute_process(
    COMMAND "${SPM_ENCODE}" --model=${OUT_DIR}/${name}.model --output_format=id
    INPUT_FILE "${OUT_DIR}/samples.txt" OUTPUT_FILE "${OUT_DIR}/samples.${name}.ids"
    RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "make_spm_models.cmake: spm_encode with ${name} failed (${rc}):\n${err}")
  endif()
endforeach()
message(STATUS "make_spm_models.cmake: models and references in ${OUT_DIR}")
