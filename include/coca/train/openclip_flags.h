#pragma once
// OpenCLIP's trainer flags (open_clip_train/params.py) that coca-train has no option of its own
// for, so that an OpenCLIP command line runs here without surprises. Each is one of:
//   same     coca does this anyway (--local-loss, --gather-with-grad): accepted silently;
//   mapped   coca does the same through its own option (--skip-scheduler: --lr-scheduler const,
//            --warmup 0; --delete-previous-checkpoint: --keep-checkpoints 1; ...);
//   ignored  no meaning here (--torchcompile, --dataset-type, --use-bn-sync): one line says why;
//   refused  it would change the result and is not supported (--siglip, --distill-*, NaFlex,
//            layer-wise lr decay): one line names the nearest supported choice.
// Flags coca-train has itself (--lr, --aug-cfg, --lock-image, ...) keep OpenCLIP's meaning.
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "coca/train/options.h"

namespace coca::train {

// Declares the flags (hidden from --help, which lists coca-train's own).
void add_openclip_flags(boost::program_options::options_description& d);

// Applies the flags present in `vm` to `o`: mapped ones set o's options, ignored ones add a line
// to o.notes, refused ones throw one line.
void apply_openclip_flags(const boost::program_options::variables_map& vm, TrainOptions& o);

// One line listing coca-train's defaults that differ from OpenCLIP's and that `vm` left unset
// ("" when none is left).
std::string openclip_default_differences(const boost::program_options::variables_map& vm);

}  // namespace coca::train
