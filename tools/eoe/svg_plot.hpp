#pragma once
// Self-contained SVG charts written by the project itself: line charts for training curves and
// heatmaps for expert x class assignments. No scripts, no fonts beyond the viewer's sans-serif.

#include <string>
#include <vector>

namespace eoe::cli {

struct series {
  std::string name;
  std::vector<double> x, y;
};

/// A line chart with axes, ticks, a legend and one polyline (plus points) per series.
std::string line_chart(const std::string& title, const std::string& x_label,
                       const std::string& y_label, const std::vector<series>& data);

struct heatmap_panel {
  std::string title;
  std::vector<std::string> row_labels; ///< one per row (experts)
  std::vector<std::string> col_labels; ///< one per column (classes)
  std::vector<std::vector<double>> values; ///< [row][col]
};

/// Heatmap panels side by side; each cell shaded by its share of its column, with the value.
std::string heatmaps(const std::string& title, const std::vector<heatmap_panel>& panels);

/// Escapes &, <, > and quotes for SVG text.
std::string xml_escape(const std::string& s);

} // namespace eoe::cli
