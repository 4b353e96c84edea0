#include "tools/eoe/svg_plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace eoe::cli {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

/// Round tick positions covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int want = 5) {
  const double span = hi - lo > 0 ? hi - lo : 1;
  const double raw = span / want;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step)
    out.push_back(std::abs(v) < 1e-12 * span ? 0 : v);
  return out;
}

} // namespace

std::string line_chart(const std::string& title, const std::string& x_label,
                       const std::string& y_label, const std::vector<series>& data) {
  const double w = 640, h = 400, left = 70, right = 150, top = 40, bottom = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (auto& s : data)
    for (size_t i = 0; i < s.x.size(); ++i) {
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1) {
    x0 = 0;
    x1 = 1;
    y0 = 0;
    y1 = 1;
  }
  if (x1 == x0)
    x1 = x0 + 1;
  if (y1 == y0)
    y1 = y0 + 1;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (w - left - right); };
  auto py = [&](double y) { return h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom); };
  std::ostringstream os;
  os << R"(<svg xmlns="http://www.w3.org/2000/svg" width=")" << w << R"(" height=")" << h
     << R"(" font-family="sans-serif" font-size="12">)" << "\n"
     << R"(<rect width="100%" height="100%" fill="white"/>)" << "\n"
     << R"(<text x=")" << w / 2 << R"(" y="22" text-anchor="middle" font-size="15">)"
     << xml_escape(title) << "</text>\n";
  // Axes, grid and ticks.
  for (double t : ticks(y0, y1)) {
    os << R"(<line x1=")" << left << R"(" x2=")" << w - right << R"(" y1=")" << py(t)
       << R"(" y2=")" << py(t) << R"(" stroke="#e0e0e0"/>)"
       << R"(<text x=")" << left - 6 << R"(" y=")" << py(t) + 4 << R"(" text-anchor="end">)"
       << num(t) << "</text>\n";
  }
  for (double t : ticks(x0, x1, 8)) {
    os << R"(<line x1=")" << px(t) << R"(" x2=")" << px(t) << R"(" y1=")" << h - bottom
       << R"(" y2=")" << h - bottom + 5 << R"(" stroke="black"/>)"
       << R"(<text x=")" << px(t) << R"(" y=")" << h - bottom + 18
       << R"(" text-anchor="middle">)" << num(t) << "</text>\n";
  }
  os << R"(<polyline fill="none" stroke="black" points=")" << left << "," << top << " " << left
     << "," << h - bottom << " " << w - right << "," << h - bottom << R"("/>)" << "\n"
     << R"(<text x=")" << (left + w - right) / 2 << R"(" y=")" << h - 10
     << R"(" text-anchor="middle">)" << xml_escape(x_label) << "</text>\n"
     << R"(<text transform="translate(16 )" << (top + h - bottom) / 2
     << ") rotate(-90)\" text-anchor=\"middle\">" << xml_escape(y_label) << "</text>\n";
  for (size_t k = 0; k < data.size(); ++k) {
    const auto& s = data[k];
    const char* color = palette[k % std::size(palette)];
    os << R"(<polyline fill="none" stroke-width="2" stroke=")" << color << R"(" points=")";
    for (size_t i = 0; i < s.x.size(); ++i)
      os << (i ? " " : "") << px(s.x[i]) << "," << py(s.y[i]);
    os << R"("/>)" << "\n";
    for (size_t i = 0; i < s.x.size(); ++i)
      os << R"(<circle r="2.5" fill=")" << color << R"(" cx=")" << px(s.x[i]) << R"(" cy=")"
         << py(s.y[i]) << R"("><title>)" << xml_escape(s.name) << " " << num(s.x[i]) << ": "
         << num(s.y[i]) << "</title></circle>\n";
    const double ly = top + 10 + 20.0 * static_cast<double>(k);
    os << R"(<line x1=")" << w - right + 15 << R"(" x2=")" << w - right + 35 << R"(" y1=")" << ly
       << R"(" y2=")" << ly << R"(" stroke-width="2" stroke=")" << color << R"("/>)"
       << R"(<text x=")" << w - right + 40 << R"(" y=")" << ly + 4 << R"(">)"
       << xml_escape(s.name) << "</text>\n";
  }
  os << "</svg>\n";
  return os.str();
}

std::string heatmaps(const std::string& title, const std::vector<heatmap_panel>& panels) {
  const double cell = 26, label_w = 40, gap = 30, top = 60;
  double width = gap;
  double height = top;
  const double title_width = 20 + 7.5 * static_cast<double>(title.size());
  for (auto& p : panels) {
    width += label_w + cell * static_cast<double>(p.col_labels.size()) + gap;
    height = std::max(height, top + cell * static_cast<double>(p.row_labels.size()) + 90);
  }
  width = std::max(width, title_width);
  std::ostringstream os;
  os << R"(<svg xmlns="http://www.w3.org/2000/svg" width=")" << width << R"(" height=")"
     << height << R"(" font-family="sans-serif" font-size="10">)" << "\n"
     << R"(<rect width="100%" height="100%" fill="white"/>)" << "\n"
     << R"(<text x="10" y="20" font-size="14">)" << xml_escape(title) << "</text>\n";
  double x = gap;
  for (auto& p : panels) {
    os << R"(<text x=")" << x << R"(" y="42" font-size="12">)" << xml_escape(p.title)
       << "</text>\n";
    const size_t cols = p.col_labels.size();
    std::vector<double> col_total(cols, 0);
    for (auto& row : p.values)
      for (size_t c = 0; c < cols && c < row.size(); ++c)
        col_total[c] += row[c];
    for (size_t r = 0; r < p.row_labels.size(); ++r) {
      const double y = top + cell * static_cast<double>(r);
      os << R"(<text x=")" << x + label_w - 4 << R"(" y=")" << y + cell / 2 + 3
         << R"(" text-anchor="end">)" << xml_escape(p.row_labels[r]) << "</text>\n";
      for (size_t c = 0; c < cols; ++c) {
        const double v = r < p.values.size() && c < p.values[r].size() ? p.values[r][c] : 0;
        const double share = col_total[c] > 0 ? v / col_total[c] : 0;
        const int shade = static_cast<int>(255 - 200 * std::min(1.0, share * 2));
        char fill[16];
        std::snprintf(fill, sizeof fill, "#%02x%02xff", shade, shade);
        os << R"(<rect x=")" << x + label_w + cell * static_cast<double>(c) << R"(" y=")" << y
           << R"(" width=")" << cell - 1 << R"(" height=")" << cell - 1 << R"(" fill=")"
           << fill << R"("><title>)" << xml_escape(p.row_labels[r]) << " x "
           << xml_escape(p.col_labels[c]) << ": " << num(v) << " (" << num(100 * share)
           << "% of the column)</title></rect>\n";
      }
    }
    for (size_t c = 0; c < cols; ++c) {
      const double cx = x + label_w + cell * static_cast<double>(c) + cell / 2;
      const double cy = top + cell * static_cast<double>(p.row_labels.size()) + 6;
      os << R"(<text transform="translate()" << cx << " " << cy
         << ") rotate(60)\" text-anchor=\"start\">" << xml_escape(p.col_labels[c])
         << "</text>\n";
    }
    x += label_w + cell * static_cast<double>(cols) + gap;
  }
  os << "</svg>\n";
  return os.str();
}

} // namespace eoe::cli
