// ExplainEntry answers, asked once per version of a day (a new position is a new version).
import type { Api } from "./api";
import type { Entry } from "./gen/coachfit/v1/common_pb";
import type { ExplainEntryResponse } from "./gen/coachfit/v1/entry_pb";

export class Explanations {
  private readonly asked = new Map<string, Promise<ExplainEntryResponse>>();

  constructor(private readonly api: Api) {}

  of(entry: Entry): Promise<ExplainEntryResponse> {
    const key = `${entry.userId}|${entry.date}|${entry.position}`;
    let answer = this.asked.get(key);
    if (!answer) {
      answer = this.api.entries.explainEntry({ userId: entry.userId, date: entry.date });
      // A failed answer is asked again next time.
      answer.catch(() => this.asked.delete(key));
      this.asked.set(key, answer);
    }
    return answer;
  }
}
